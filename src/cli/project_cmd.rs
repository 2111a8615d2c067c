//! Project folders: init, plan, deploy, pull (see `crate::project`).

use std::path::Path;

use super::term::{color, spinner};
use crate::client::Client;
use crate::project;

/// `maestro init DIR`.
pub fn init(dir: &Path) -> anyhow::Result<()> {
    for f in project::init(dir)? {
        println!("wrote {}", dir.join(f).display());
    }
    println!(
        "next: `maestro plan {0}` shows what `maestro deploy {0}` would create",
        dir.display()
    );
    Ok(())
}

/// Read the folder (every problem reported, nothing sent) and the server, and compare.
async fn compare(dir: &Path, client: &Client, prune: bool) -> anyhow::Result<project::Plan> {
    let local = project::load(dir)?;
    let reading = spinner(format!("reading {}", client.base()));
    let remote = project::fetch(client).await;
    reading.finish_and_clear();
    Ok(project::plan(&local, &remote?, prune))
}

/// `maestro plan DIR`.
pub async fn plan(dir: &Path, client: &Client, prune: bool, json: bool, verbose: bool) -> anyhow::Result<()> {
    let plan = compare(dir, client, prune).await?;
    match json {
        true => println!("{:#}", plan.to_json()),
        false => print!("{}", plan.render(color(), verbose)),
    }
    Ok(())
}

/// `maestro deploy DIR`: the plan, then each change as it is applied.
pub async fn deploy(dir: &Path, client: &Client, prune: bool, json: bool) -> anyhow::Result<()> {
    let plan = compare(dir, client, prune).await?;
    if plan.changes() == 0 {
        match json {
            true => println!("{:#}", serde_json::json!({"applied": [], "summary": plan.summary()})),
            false => print!("{}", plan.render(color(), false)),
        }
        return Ok(());
    }
    if !json {
        print!("{}", plan.render(color(), false));
    }
    // A spinner names the change under way (a package install can take minutes); each line
    // is printed above it once done.
    let working = spinner("applying the plan");
    let mut progress = |p: project::Progress| match p {
        project::Progress::Starting(what) => working.set_message(what.to_string()),
        project::Progress::Done(line) if !json => working.suspend(|| println!("  {line}")),
        project::Progress::Done(_) => {}
    };
    let applied = project::apply(client, &plan, &mut progress).await;
    working.finish_and_clear();
    let applied = applied?;
    match json {
        true => println!(
            "{:#}",
            serde_json::json!({"applied": applied, "summary": plan.summary()})
        ),
        false => println!("Deployed: {}.", plan.summary()),
    }
    Ok(())
}

/// `maestro pull DIR`.
pub async fn pull(dir: &Path, client: &Client) -> anyhow::Result<()> {
    let reading = spinner(format!("reading {}", client.base()));
    let remote = project::fetch(client).await;
    reading.finish_and_clear();
    let remote = remote?;
    for f in project::write(dir, &remote)? {
        println!("wrote {}", dir.join(f).display());
    }
    Ok(())
}
