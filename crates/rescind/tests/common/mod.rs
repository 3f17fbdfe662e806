//! Running the `rescind` binary from tests.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Server {
    pub child: Child,
    /// Behind a mutex so a `&Server` may cross an await in a spawned task.
    lines: std::sync::Mutex<mpsc::Receiver<String>>,
    pub address: String,
    pub printed: Vec<String>,
}

/// Starts `rescind serve` on `database_url` with `args` and `envs` added, and waits until it serves.
pub fn start(database_url: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rescind"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", database_url])
        .args(args)
        .env("RESCIND_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied())
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

/// A test that fails midway must not leave its rescind running (holding the test runner's pipes).
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Kills the process with SIGKILL: no shutdown, no flush, as a power cut would.
    pub fn kill(mut self) {
        let killed = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let _ = self.child.wait();
    }

    pub fn token(&self) -> Option<String> {
        self.printed
            .iter()
            .find_map(|line| line.split("(shown once): ").nth(1).map(str::to_owned))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
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

/// The JSON at `url` (a simulator's ledger, its faults).
pub async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client
        .get(url)
        .send()
        .await
        .expect("it answers")
        .json()
        .await
        .expect("JSON")
}

/// A card payment of `amount` yen at the simulated Stripe; answers its PaymentIntent id.
pub async fn payment_intent(client: &reqwest::Client, sim: &str, amount: i64) -> String {
    let intent: Value = client
        .post(format!("{sim}/_sim/payment_intents"))
        .json(&serde_json::json!({"amount": amount, "currency": "jpy"}))
        .send()
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("JSON");
    intent["id"].as_str().expect("an id").to_owned()
}

/// Runs `test` with a database URL scoped to a fresh PostgreSQL schema of `RESCIND_TEST_DATABASE_URL`,
/// dropped afterwards whatever happens; skips (and says so) when that variable is not set.
pub async fn on_postgres_schema<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use sqlx::Connection;
    let Some(url) = std::env::var("RESCIND_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("RESCIND_TEST_DATABASE_URL is not set: the PostgreSQL run of this test is skipped");
        return;
    };
    let schema = format!("{prefix}_{:016x}", rand::random::<u64>());
    let mut connection = sqlx::PgConnection::connect(&url)
        .await
        .expect("the test database is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut connection)
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let outcome = tokio::spawn(test(format!("{url}{separator}options[search_path]={schema}"))).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut connection)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
