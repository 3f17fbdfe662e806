//! The `rescind serve` binary as a user runs it: creates its SQLite file, seeds the demo shop once,
//! keeps what it stored across a restart, and stops cleanly on SIGTERM.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Server {
    child: Child,
    /// Behind a mutex so a `&Server` may cross an await in a spawned task.
    lines: std::sync::Mutex<mpsc::Receiver<String>>,
    address: String,
    printed: Vec<String>,
}

fn start(database_url: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rescind"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .env("RESCIND_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("rescind starts");
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("rescind's stdout is not captured");
    };
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rescind did not report that it is serving: {printed:?}");
        };
        let log: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if log["fields"]["message"] == "rescind is serving" {
            let address = log["fields"]["address"]
                .as_str()
                .expect("the address is logged")
                .to_owned();
            return Server {
                child,
                lines: std::sync::Mutex::new(lines),
                address,
                printed,
            };
        }
        printed.push(line);
    }
}

impl Server {
    fn token(&self) -> Option<String> {
        self.printed
            .iter()
            .find_map(|line| line.split("(shown once): ").nth(1).map(str::to_owned))
    }

    /// Sends SIGTERM and waits for the process to exit.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let rest: Vec<String> = self.lines.lock().expect("lines").try_iter().collect();
                return (status, rest);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("rescind did not stop within 10 s of SIGTERM");
    }
}

async fn order_count(server: &Server, token: &str) -> usize {
    let answer: Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/orders", server.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON");
    answer["items"].as_array().expect("a list").len()
}

/// Runs rescind twice on one database: the demo is seeded once, data survives, SIGTERM stops it.
async fn run_twice(database_url: &str) {
    let first = start(database_url);
    let token = first.token().expect("the demo token is printed");
    assert_eq!(order_count(&first, &token).await, 9);
    let health = reqwest::get(format!("http://{}/healthz", first.address)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (status, rest) = first.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(rest.iter().any(|line| line.contains("rescind stopped")), "{rest:?}");

    let second = start(database_url);
    assert_eq!(second.token(), None, "the demo shop is created only once");
    assert_eq!(
        order_count(&second, &token).await,
        9,
        "what was stored survives a restart"
    );
    let (status, _) = second.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn serve_on_sqlite_creates_its_file_seeds_the_demo_once_and_stops_cleanly_on_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("rescind.db");
    assert!(!file.exists());
    run_twice(&format!("sqlite://{}", file.display())).await;
    assert!(file.exists(), "the SQLite file is created on first start");
}

#[tokio::test]
async fn serve_on_postgres_migrates_a_fresh_schema_seeds_the_demo_once_and_stops_cleanly_on_sigterm() {
    use sqlx::Connection;
    let Some(url) = std::env::var("RESCIND_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("RESCIND_TEST_DATABASE_URL is not set: the PostgreSQL run of this test is skipped");
        return;
    };
    let schema = format!("rescind_serve_{:016x}", rand::random::<u64>());
    let mut connection = sqlx::PgConnection::connect(&url)
        .await
        .expect("the test database is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut connection)
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let outcome = tokio::spawn({
        let scoped = format!("{url}{separator}options[search_path]={schema}");
        async move { run_twice(&scoped).await }
    })
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut connection)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
