//! The `websocketlivestream` binary: parse the command line, start tracing, run.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use websocketlivestream::cli::{self, Cli, Command, ServeArgs};
use websocketlivestream::{fmp4, package, server, source};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        None => serve(&cli.serve),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Package(args)) => package::package(
            &args.input,
            &args.out,
            package::Options {
                segment_secs: args.segment_duration,
                fragment_secs: args.fragment_duration,
                on_demand: args.profile == cli::ProfileArg::OnDemand,
            },
        )
        .map_err(|e| e.to_string())
        .map(|done| {
            println!(
                "wrote {} segments ({:.1} s, {} tracks) and manifest.mpd to {}",
                done.segments,
                done.duration_secs,
                done.tracks,
                args.out.display()
            );
        }),
        Some(Command::Probe(args)) => probe(&args.input),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    let settings = cli::resolve_serve(args, source::ffmpeg::ffmpeg_available())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(server::serve(settings))
        .map_err(|e| e.to_string())
}

fn probe(input: &std::path::Path) -> Result<(), String> {
    let data = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let dump = fmp4::probe::dump(&bytes::Bytes::from(data))
        .map_err(|e| format!("{}: {e}", input.display()))?;
    // What package would cut; a file it cannot package still has its box tree above.
    let options = package::Options {
        segment_secs: 2.0,
        fragment_secs: None,
        on_demand: false,
    };
    let plan = match package::describe(input, options) {
        Ok(plan) => format!("\n{plan}"),
        Err(err) => format!("\npackage would refuse it: {err}\n"),
    };
    // A reader that stops early (`probe FILE | head`) is not an error.
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out
        .write_all(dump.as_bytes())
        .and_then(|()| out.write_all(plan.as_bytes()))
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to standard output: {err}"))
        }
        _ => Ok(()),
    }
}
