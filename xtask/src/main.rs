//! `cargo xtask test`: everything the test suite needs, then every test.
//! `cargo xtask ci`: formatting and lint checks, then `test`.
//! `cargo xtask run [ARGS]`: build everything and start the server
//! (`amicus serve`, data under `./data`, listening on 127.0.0.1:8080).
//!
//! Both install what is missing on a fresh machine: the
//! `wasm32-unknown-unknown` target (through rustup) and Debian's `age`
//! command (the reference implementation the sealed-intake format is
//! interop-tested against).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => test(),
        "ci" => ci(),
        "run" => serve(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|ci|run>\n  test  install test prerequisites, run every test, build the core for wasm32\n  ci    cargo fmt --check, clippy -D warnings, then test\n  run   build and start the server on ./data (extra arguments go to `amicus serve`)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("+ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn prerequisites() -> Result<(), String> {
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add the wasm32 target: {e}"))?;
    if !String::from_utf8_lossy(&targets.stdout).contains("wasm32-unknown-unknown") {
        run("rustup", &["target", "add", "wasm32-unknown-unknown"])?;
    }
    if !has("age") {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let apt = |args: &[&str]| {
            let result = if root {
                run("apt-get", args)
            } else {
                run("sudo", &[&["apt-get"], args].concat())
            };
            result.map_err(|e| format!("{e}; install Debian's `age` package by hand"))
        };
        apt(&["update", "-qq"])?;
        apt(&["install", "-y", "-qq", "age"])?;
    }
    Ok(())
}

fn test() -> Result<(), String> {
    prerequisites()?;
    // The end-to-end tests drive the real `amicus` binary.
    run(
        "cargo",
        &["build", "--release", "-p", "amicus-cli", "--bin", "amicus"],
    )?;
    run("cargo", &["test", "--workspace", "--release"])?;
    run(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "amicus-core",
            "--target",
            "wasm32-unknown-unknown",
        ],
    )?;
    let tree = Command::new("cargo")
        .args([
            "tree",
            "-p",
            "amicus-core",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let tree = String::from_utf8_lossy(&tree.stdout);
    for forbidden in ["tokio ", "sled ", "tantivy ", "axum "] {
        if tree.lines().any(|l| l.starts_with(forbidden)) {
            return Err(format!(
                "amicus-core must not depend on {}",
                forbidden.trim()
            ));
        }
    }
    eprintln!("amicus-core: wasm32 build ok, no tokio/sled/tantivy/axum in its tree");
    Ok(())
}

fn serve(args: &[String]) -> Result<(), String> {
    let mut all = vec![
        "run",
        "--release",
        "-p",
        "amicus-cli",
        "--bin",
        "amicus",
        "--",
        "serve",
    ];
    all.extend(args.iter().map(String::as_str));
    run("cargo", &all)
}

fn ci() -> Result<(), String> {
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    test()
}
