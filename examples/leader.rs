//! Leader election across three instances of a service: one leader runs the
//! schedule, the others stand by inside the server; kill the leader and the next
//! takes over at once, with a higher term (its fencing token).
//!
//! ```sh
//! cargo run -p pglock-examples --example leader
//! ```
//!
//! Without arguments it plays the whole scene: starts three instances (this
//! same program, `--instance NAME`), waits for a leader, kills the leader's
//! process (SIGKILL), watches the next take over, then terminates the new
//! leader's backend on the server and watches again, and stops the rest. Uses
//! `DATABASE_URL` when set, otherwise a throw-away cluster.
//!
//! One instance by hand, as a service would run (Ctrl-C leaves the election
//! and hands the leadership over):
//!
//! ```sh
//! DATABASE_URL=postgres://… cargo run -p pglock-examples --example leader -- --instance a
//! ```

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pglock_runtime::Change;

const ELECTION: &str = "examples::scheduler";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--instance") {
        Some(i) => instance(args.get(i + 1).ok_or("--instance NAME")?),
        None => scene(),
    }
}

/// One instance of the service: a candidate that runs the schedule while it
/// leads.
#[tokio::main]
async fn instance(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => return Err("an instance needs DATABASE_URL".into()),
    };
    let config =
        pglock_runtime::Config::from_url(&url)?.application_name(&format!("leader-example-{name}"));
    pglock_runtime::register("default", config)?;
    let candidate = pglock_runtime::leader(ELECTION).join()?;
    println!("[{name}] joined the election, standing by");
    let mut changes = candidate.changes();
    let report = {
        let name = name.to_owned();
        tokio::spawn(async move {
            while let Some(change) = changes.next().await {
                match change {
                    Change::Elected { term } => println!("[{name}] elected: term {term}"),
                    Change::Revoked { term, reason } => {
                        println!("[{name}] term {term} ended: {reason}");
                    }
                    _ => {}
                }
            }
        })
    };
    let schedule = candidate.run_while_leader(|term| {
        let name = name.to_owned();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(700));
            for n in 1.. {
                tick.tick().await;
                // A real job would pass `term` with every write it makes
                // outside this session, e.g. `SELECT pglock.check_term(…)`.
                println!("[{name}] term {term}: running the schedule, tick {n}");
            }
        }
    });
    tokio::select! {
        r = schedule => r.map(drop)?,
        () = common::termination() => {}
    }
    candidate.leave().await;
    report.abort();
    println!("[{name}] left the election");
    Ok(())
}

/// A running instance and the lines it printed.
struct Instance {
    name: String,
    child: Child,
}

fn start(name: &str, url: &str, lines: &mpsc::Sender<String>) -> std::io::Result<Instance> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--instance", name])
        .env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().expect("piped");
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            lines.send(line).ok();
        }
    });
    Ok(Instance {
        name: name.to_owned(),
        child,
    })
}

/// Waits for the next `[name] elected: term T` line: (name, term).
fn next_leader(
    lines: &mpsc::Receiver<String>,
) -> Result<(String, u64), Box<dyn std::error::Error>> {
    loop {
        let line = lines.recv_timeout(Duration::from_secs(30))?;
        if let Some((who, rest)) = line
            .strip_prefix('[')
            .and_then(|l| l.split_once("] elected: term "))
        {
            return Ok((who.to_owned(), rest.trim().parse()?));
        }
    }
}

fn scene() -> Result<(), Box<dyn std::error::Error>> {
    let url = common::connect()?;
    let (tx, lines) = mpsc::channel();
    let mut instances: Vec<Instance> = ["a", "b", "c"]
        .iter()
        .map(|n| start(n, &url, &tx))
        .collect::<Result<_, _>>()?;
    let (first, term) = next_leader(&lines)?;
    println!("--- {first} leads in term {term}; the others wait inside the server");
    std::thread::sleep(Duration::from_secs(2));

    println!("--- killing {first} (SIGKILL): its session dies with it");
    let i = instances
        .iter()
        .position(|i| i.name == first)
        .expect("known");
    let mut killed = instances.remove(i);
    killed.child.kill()?;
    killed.child.wait()?;
    let (second, term2) = next_leader(&lines)?;
    println!("--- {second} took over in term {term2} (> {term})");
    std::thread::sleep(Duration::from_secs(2));

    println!("--- terminating {second}'s backend on the server");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let current = pglock_runtime::terms().name(ELECTION).current().await?;
        let pid = current
            .and_then(|t| t.backend_pid)
            .ok_or("no current leader")?;
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let (third, term3) = next_leader(&lines)?;
    println!("--- {third} took over in term {term3}; {second} stands by again");
    std::thread::sleep(Duration::from_secs(2));

    println!("--- stopping the instances");
    for mut i in instances {
        // SIGTERM: each leaves the election cleanly.
        Command::new("kill")
            .arg(i.child.id().to_string())
            .status()?;
        i.child.wait()?;
    }
    Ok(())
}
