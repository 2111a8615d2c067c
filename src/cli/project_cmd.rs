//! Project folders: init, plan, deploy, pull (see `crate::project`).

use std::path::Path;

use super::color;
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
    let remote = project::fetch(client).await?;
    Ok(project::plan(&local, &remote, prune))
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
    let mut progress = |line: &str| {
        if !json {
            println!("  {line}");
        }
    };
    let applied = project::apply(client, &plan, &mut progress).await?;
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
    let remote = project::fetch(client).await?;
    for f in project::write(dir, &remote)? {
        println!("wrote {}", dir.join(f).display());
    }
    Ok(())
}
