//! `midge-bench`: an MQTT 3.1.1 load generator for any broker, and the
//! tools that turn its results into a table and a chart.
//!
//! ```text
//! midge-bench fanout -n 1000 -q 1            # 1 -> 1000, QoS 1, max mode
//! midge-bench p2p --pairs 1000 -q 1 -r 1     # 1000 pairs, 1 msg/s each
//! midge-bench fanin -P 100 -o 0              # 100 publishers flat out
//! midge-bench conns -n 10000 --hold 2 --broker-pid PID
//! midge-bench table results.json
//! midge-bench chart results.json chart.svg
//! ```
//!
//! Exit codes: 0 when the run finished (its report says how well), 1 when
//! it could not run (no broker, a refused connection during setup), 2 for
//! bad arguments.

#[path = "bench/mod.rs"]
mod bench;

use std::process::ExitCode;

use clap::Parser;

use bench::cli::{Cli, Command, LoadArgs};
use bench::plan::Scenario;
use bench::report::Report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (report, json) = match cli.command {
        Command::Fanout(args) => run_load(Scenario::Fanout, args),
        Command::P2p(args) => run_load(Scenario::P2p, args),
        Command::Fanin(args) => run_load(Scenario::Fanin, args),
        Command::Conns(args) => {
            let json = args.target.json;
            (bench::conns::run(args), json)
        }
        Command::Table(args) => return finish(bench::table::render(&args)),
        Command::Chart(args) => return finish(bench::chart::write(&args)),
    };
    match report {
        Ok(report) => {
            print_report(&report, json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("midge-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_load(scenario: Scenario, args: LoadArgs) -> (Result<Report, String>, bool) {
    let json = args.target.json;
    (bench::load::run(scenario, args), json)
}

fn print_report(report: &Report, json: bool) {
    if !json {
        print!("{}", report.to_text());
        return;
    }
    match serde_json::to_string(report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("midge-bench: cannot write JSON: {e}"),
    }
}

fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("midge-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
