//! The SQLite group writer's durability, apart from its commits: a group commits without waiting
//! for the disk, and its callers are answered once a sync that began after that commit is done.
//!
//! While it holds the writer connection the group writer commits with `synchronous = NORMAL` — the
//! commit writes the group's frames to the WAL without waiting for them to reach the disk — and
//! goes on with the next group while the [`Syncer`]'s thread fsyncs the `-wal` file. The callers
//! hear only after that, so a 200 still means the cancellation is on disk, and one fsync covers
//! every group committed meanwhile. (Waiting in its commit, the writer spent about a quarter of its
//! time idle at 64 clients.) A WAL is replayed after a crash up to its first missing frame, so a
//! group built on an earlier, unanswered one is never kept without it. A read may see a group before
//! its sync (a millisecond or so): everything that acts on the outside world — a workflow step, a
//! webhook delivery, a stock push, the outbox's publisher — claims its work with a write first,
//! whose commit waits for its own fsync and so covers every frame before it, and the events a
//! consumer pages through are synced before they are answered (`make_seen_durable`).
//!
//! (The same on PostgreSQL — its group transactions committed with `synchronous_commit = off`, a
//! synchronously committed transaction on another connection flushing the log before the answers
//! — was tried in the eleventh session and not kept: BENCHMARKS.md.)

/// How a written group is answered once its commit is on disk (with the error when it may not be).
pub(crate) type Answer = Box<dyn FnOnce(Option<anyhow::Error>) + Send>;

/// Syncs the WAL on a thread of its own and answers the groups committed before each sync began.
pub(crate) struct Syncer {
    pending: std::sync::mpsc::Sender<Answer>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    /// Starts the thread `name`, which syncs with `sync`.
    pub(crate) fn start(
        name: &str,
        mut sync: impl FnMut() -> std::io::Result<()> + Send + 'static,
    ) -> std::io::Result<Syncer> {
        let (pending, waiting) = std::sync::mpsc::channel::<Answer>();
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            while let Ok(first) = waiting.recv() {
                let answers: Vec<Answer> = std::iter::once(first).chain(waiting.try_iter()).collect();
                let started = std::time::Instant::now();
                let synced = sync();
                tracing::debug!(
                    groups = answers.len(),
                    took_us = started.elapsed().as_micros(),
                    "WAL synced"
                );
                if let Err(error) = &synced {
                    tracing::error!(error = %error, "the WAL was not synced; its changes are answered as failed");
                }
                for answer in answers {
                    answer(
                        synced
                            .as_ref()
                            .err()
                            .map(|error| anyhow::anyhow!("the change may not have reached the disk: {error}")),
                    );
                }
            }
        })?;
        Ok(Syncer { pending, thread })
    }

    /// Answers a committed group once a sync that began after its commit is done.
    pub(crate) fn answer_once_synced(&self, answer: Answer) {
        if let Err(std::sync::mpsc::SendError(answer)) = self.pending.send(answer) {
            answer(Some(anyhow::anyhow!("the syncer has stopped")));
        }
    }

    /// Syncs and answers what is pending, then stops.
    pub(crate) fn stop(self) {
        drop(self.pending);
        if self.thread.join().is_err() {
            tracing::error!("the syncer panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Syncer;
    use std::sync::mpsc;
    use std::time::Duration;

    /// An answer that reports what it was answered with.
    fn answer_into(answered: &mpsc::Sender<Option<String>>) -> super::Answer {
        let answered = answered.clone();
        Box::new(move |failure| {
            let _ = answered.send(failure.map(|error| error.to_string()));
        })
    }

    /// A syncer whose every sync tells the first receiver it began and waits for the sender's word to
    /// finish.
    fn gated() -> (Syncer, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (began, sync_began) = mpsc::channel();
        let (finish, sync_may_finish) = mpsc::channel::<()>();
        let syncer = Syncer::start("test-sync", move || {
            began.send(()).expect("the test listens");
            sync_may_finish.recv().expect("the test lets the sync finish");
            Ok(())
        })
        .expect("the syncer starts");
        (syncer, sync_began, finish)
    }

    #[test]
    fn a_committed_group_is_answered_only_once_the_sync_after_its_commit_is_done() {
        let (syncer, sync_began, finish) = gated();
        let (answered, answers) = mpsc::channel();
        syncer.answer_once_synced(answer_into(&answered));
        sync_began.recv_timeout(Duration::from_secs(5)).expect("a sync begins");
        assert!(
            answers.recv_timeout(Duration::from_millis(100)).is_err(),
            "answered while its sync was still waiting for the disk"
        );
        finish.send(()).expect("the sync waits");
        assert_eq!(answers.recv_timeout(Duration::from_secs(5)), Ok(None));
        drop(finish);
        syncer.stop();
    }

    #[test]
    fn groups_committed_during_a_sync_share_the_next_one() {
        let (syncer, sync_began, finish) = gated();
        let (answered, answers) = mpsc::channel();
        syncer.answer_once_synced(answer_into(&answered));
        sync_began
            .recv_timeout(Duration::from_secs(5))
            .expect("the first sync begins");
        for _ in 0..3 {
            syncer.answer_once_synced(answer_into(&answered));
        }
        finish.send(()).expect("the first sync waits");
        assert_eq!(answers.recv_timeout(Duration::from_secs(5)), Ok(None));
        assert!(
            answers.recv_timeout(Duration::from_millis(100)).is_err(),
            "a group committed during the first sync was answered by it"
        );
        sync_began
            .recv_timeout(Duration::from_secs(5))
            .expect("a second sync begins");
        finish.send(()).expect("the second sync waits");
        for _ in 0..3 {
            assert_eq!(answers.recv_timeout(Duration::from_secs(5)), Ok(None));
        }
        assert!(
            sync_began.recv_timeout(Duration::from_millis(100)).is_err(),
            "the three groups took more than one sync"
        );
        drop(finish);
        syncer.stop();
    }

    #[test]
    fn a_failed_sync_answers_its_groups_as_failed() {
        let syncer =
            Syncer::start("test-sync", || Err(std::io::Error::other("the disk went away"))).expect("the syncer starts");
        let (answered, answers) = mpsc::channel();
        syncer.answer_once_synced(answer_into(&answered));
        let failure = answers
            .recv_timeout(Duration::from_secs(5))
            .expect("answered")
            .expect("answered as failed");
        assert!(failure.contains("may not have reached the disk"), "{failure}");
        assert!(failure.contains("the disk went away"), "{failure}");
        syncer.stop();
    }

    #[test]
    fn stopping_syncs_and_answers_every_group_still_waiting() {
        let (finish, sync_may_finish) = mpsc::channel::<()>();
        let syncs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = syncs.clone();
        let syncer = Syncer::start("test-sync", move || {
            let _ = sync_may_finish.recv();
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .expect("the syncer starts");
        let (answered, answers) = mpsc::channel();
        for _ in 0..5 {
            syncer.answer_once_synced(answer_into(&answered));
        }
        drop(finish);
        syncer.stop();
        assert_eq!(answers.try_iter().collect::<Vec<_>>(), vec![None; 5]);
        assert!(syncs.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    }
}
