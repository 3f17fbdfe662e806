//! The `rescind-sim` binary: serves the simulators.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "rescind-sim",
    about = "Simulators of the systems rescind talks to, with fault injection."
)]
struct Cli {
    /// Address to listen on; port 0 picks a free port, printed at start.
    #[arg(long, env = "RESCIND_SIM_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// The secret key the simulated Stripe account accepts.
    #[arg(long, env = "RESCIND_SIM_STRIPE_SECRET_KEY", default_value = rescind_sim::DEFAULT_SECRET_KEY)]
    stripe_secret_key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    println!("rescind-sim listening on {}", listener.local_addr()?);
    let sim = rescind_sim::Sim::new(&cli.stripe_secret_key);
    rescind_sim::serve(listener, sim, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
