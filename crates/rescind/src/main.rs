//! The `rescind` binary: parses the command line and wires the pieces together.

mod bench;
mod demo;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rescind_domain::RetryPolicy;
use rescind_http::{AppState, ServiceSettings};
use rescind_store::Store;
use rescind_workflow::WorkerConfig;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the C library's allocator: the group writer's thread allocates what the HTTP
/// and worker threads free (orders, rows, answers), which glibc's per-thread arenas handle with
/// locking and consolidation — about a seventh of the server's CPU in the workflow benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rescind",
    version,
    about = "Cancel e-commerce orders correctly everywhere at once."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Run a demo: rescind on a fresh SQLite file with simulated channels, warehouse and payment
    /// provider, a shop wired to all of them and a few dozen orders; prints the console's address and token.
    Demo(demo::DemoArgs),
    /// Measure cancellations per second and latency against a fresh database (BENCHMARKS.md).
    Bench(bench::BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RESCIND_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// `sqlite://FILE` (created on first start) or `postgres://…`.
    #[arg(long, env = "RESCIND_DATABASE_URL", default_value = "sqlite://rescind.db")]
    database_url: String,
    /// The platform operator's token: may create shops and their tokens.
    #[arg(long, env = "RESCIND_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Create a demo shop with orders when the database has no shop yet, and print its token.
    #[arg(long, env = "RESCIND_DEMO")]
    demo: bool,
    #[arg(long, env = "RESCIND_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// How long a cancel request waits for its steps before answering 202 `processing`.
    #[arg(long, env = "RESCIND_CANCEL_WAIT_MS", default_value_t = 5000)]
    cancel_wait_ms: u64,
    /// The longest wait for a partner's answer before its outcome counts as unknown.
    #[arg(long, env = "RESCIND_PARTNER_TIMEOUT_MS", default_value_t = 10_000)]
    partner_timeout_ms: u64,
    /// Attempts of a failing step before the cancellation needs attention.
    #[arg(long, env = "RESCIND_RETRY_ATTEMPTS_MAX", default_value_t = 12)]
    retry_attempts_max: u32,
    /// The wait after a step's first failure; doubled after each further one.
    #[arg(long, env = "RESCIND_RETRY_DELAY_BASE_MS", default_value_t = 500)]
    retry_delay_base_ms: u64,
    /// The longest wait between two attempts of a step.
    #[arg(long, env = "RESCIND_RETRY_DELAY_MAX_MS", default_value_t = 120_000)]
    retry_delay_max_ms: u64,
    /// Steps one process runs at once.
    #[arg(long, env = "RESCIND_WORKER_CONCURRENCY", default_value_t = 16)]
    worker_concurrency: usize,
    /// How long a claimed step (or webhook delivery) belongs to its worker; after that another worker
    /// (or process) takes it over. Must exceed the partner timeout.
    #[arg(long, env = "RESCIND_WORKER_LEASE_MS", default_value_t = 30_000)]
    worker_lease_ms: u64,
    /// How often marketplaces are asked which orders they cancelled on their side; 0 never.
    #[arg(long, env = "RESCIND_CHANNEL_POLL_INTERVAL_S", default_value_t = 300)]
    channel_poll_interval_s: u64,
    /// Attempts of a webhook delivery before it is given up (a replay starts it again).
    #[arg(long, env = "RESCIND_WEBHOOK_ATTEMPTS_MAX", default_value_t = 12)]
    webhook_attempts_max: u32,
    /// The wait after a delivery's first failure; doubled after each further one (capped at 30 minutes).
    #[arg(long, env = "RESCIND_WEBHOOK_RETRY_DELAY_BASE_MS", default_value_t = 1000)]
    webhook_retry_delay_base_ms: u64,
    /// Let webhooks point at loopback, private and link-local addresses (a single merchant's own
    /// receivers); off, each shop's webhooks reach public addresses only.
    #[arg(long, env = "RESCIND_WEBHOOK_ALLOW_PRIVATE_TARGETS")]
    webhook_allow_private_targets: bool,
    /// Publish every event to NATS JetStream at this server (`nats://host:4222`) as well.
    #[arg(long, env = "RESCIND_NATS_URL")]
    nats_url: Option<String>,
    /// The JetStream stream events go to; created when missing.
    #[arg(long, env = "RESCIND_NATS_STREAM", default_value = "RESCIND")]
    nats_stream: String,
    /// The first token of every event's subject: `{prefix}.{shop_id}.{event type}`.
    #[arg(long, env = "RESCIND_NATS_SUBJECT_PREFIX", default_value = "rescind")]
    nats_subject_prefix: String,
}

impl ServeArgs {
    fn settings(&self) -> Result<ServiceSettings> {
        anyhow::ensure!(
            self.worker_lease_ms > self.partner_timeout_ms,
            "--worker-lease-ms ({}) must exceed --partner-timeout-ms ({}): a worker must never lose a step it is still calling about",
            self.worker_lease_ms,
            self.partner_timeout_ms
        );
        anyhow::ensure!(self.retry_attempts_max >= 1, "--retry-attempts-max must be at least 1");
        Ok(ServiceSettings {
            cancel_wait: Duration::from_millis(self.cancel_wait_ms),
            worker: WorkerConfig {
                retry: RetryPolicy {
                    attempts_max: self.retry_attempts_max,
                    delay_base_ms: self.retry_delay_base_ms,
                    delay_max_ms: self.retry_delay_max_ms.max(self.retry_delay_base_ms),
                },
                lease: Duration::from_millis(self.worker_lease_ms),
                concurrency: self.worker_concurrency.max(1),
                partner_timeout: Duration::from_millis(self.partner_timeout_ms),
                ..WorkerConfig::default()
            },
            channel_poll_interval: (self.channel_poll_interval_s > 0)
                .then(|| Duration::from_secs(self.channel_poll_interval_s)),
            webhooks: rescind_workflow::webhooks::DeliveryConfig {
                retry: RetryPolicy {
                    attempts_max: self.webhook_attempts_max.max(1),
                    delay_base_ms: self.webhook_retry_delay_base_ms,
                    delay_max_ms: (30 * 60 * 1000).max(self.webhook_retry_delay_base_ms),
                },
                // A receiver gets the partners' time to answer, and a claimed delivery is one
                // process's as long as a claimed step is.
                timeout: Duration::from_millis(self.partner_timeout_ms),
                lease: Duration::from_millis(self.worker_lease_ms),
                allow_private_targets: self.webhook_allow_private_targets,
                ..rescind_workflow::webhooks::DeliveryConfig::default()
            },
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Command::Serve(args) = &cli.command {
        if Store::names_postgres(&args.database_url) {
            runtime.on_thread_start(below_the_group_writer());
        }
    }
    runtime.build()?.block_on(run(cli))
}

/// How far below the rest of the process a server's runtime threads (HTTP requests, the workflow's
/// steps, blocking tasks) run on PostgreSQL, in nice steps.
const RUNTIME_THREADS_NICE: i32 = 5;

/// What each runtime thread of a server on PostgreSQL runs as it starts: it sets its priority
/// [`RUNTIME_THREADS_NICE`] below the process's own (taken now, on the main thread), so that the
/// group writer's thread, started from the main thread, keeps the process's own. The writer is the
/// one serial stage every change passes, and waits for PostgreSQL several times a group; waiting
/// behind a runtime thread for a core after each answer held every group up. Own-store at 64 clients
/// 7–9 % faster in paired runs, at 8 clients and the workflow within the noise. Not on SQLite, whose
/// writer seldom waits: its workflow ran 4–10 % slower so (the workflow's steps, on the runtime
/// threads, then waited for the simulated partners' processes). BENCHMARKS.md, twenty-first
/// session. Lowering a priority needs no privilege; a thread whose priority cannot change keeps it.
/// (Set, not added: a blocking thread started from a runtime thread would otherwise go down twice.)
fn below_the_group_writer() -> impl Fn() + Send + Sync + 'static {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `getpriority` and `setpriority` take no pointers; on Linux, `PRIO_PROCESS` with 0
        // is the calling thread only.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let lowered = (own + RUNTIME_THREADS_NICE).min(19);
        move || unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, lowered);
        }
    }
    #[cfg(not(target_os = "linux"))]
    || {}
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Demo(args) => {
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            demo::run(args, shutdown_signal()).await
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks the kernel for huge pages on its
/// arenas, so memory it gave back and takes again faults in 2 MiB at a time, each zeroed whole: on
/// PostgreSQL, whose group writer builds each group's write in buffers of a few hundred KiB, `perf`
/// found 2.4 % of the server's CPU zeroing huge pages under mimalloc's page set-up; without them its
/// own-store cancels had a shorter tail and less CPU each, and every scenario a smaller RSS
/// (BENCHMARKS.md, twentieth session). The same as `MIMALLOC_ALLOW_THP=0`; a kernel that refuses
/// leaves them as they are.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: `PR_SET_THP_DISABLE` takes no pointers; it sets a flag of this process only.
    let refused = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0;
    #[cfg(not(target_os = "linux"))]
    let refused = false;
    if refused {
        tracing::debug!("transparent huge pages stay as the kernel has them");
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }
    no_transparent_huge_pages();
    let settings = args.settings()?;
    let store = Store::open(&args.database_url)
        .await
        .with_context(|| format!("cannot open the database {}", redact(&args.database_url)))?;
    if args.demo {
        if let Some(demo) = rescind_http::demo::seed(&store).await? {
            println!("Demo shop {} created with {} orders.", demo.shop_id, demo.orders);
            println!("Its API token (shown once): {}", demo.token);
            println!(
                "Try: curl -H 'Authorization: Bearer {}' http://{}/api/v1/orders",
                demo.token, args.listen
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, backend = store.backend_name(), "rescind is serving");
    let mut state = AppState::new(store, args.admin_token.as_deref(), settings);
    if let Some(url) = &args.nats_url {
        state = state.with_event_stream(rescind_workflow::nats::StreamConfig {
            url: url.clone(),
            stream: args.nats_stream.clone(),
            subject_prefix: args.nats_subject_prefix.clone(),
            poll: Duration::from_millis(200),
        });
    }
    rescind_http::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("rescind stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// The database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod huge_pages {
    #[test]
    fn the_server_process_runs_without_transparent_huge_pages() {
        super::no_transparent_huge_pages();
        let status = std::fs::read_to_string("/proc/self/status").expect("the process's status");
        assert!(status.contains("THP_enabled:\t0"), "{status}");
    }
}
