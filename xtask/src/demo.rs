//! `cargo xtask demo`: the stand-in backend on :8000, the gateway on :8359 (admin :8360), Redis
//! from `REDIS_URL` or 127.0.0.1:6379 when it answers, otherwise the in-memory store.
//!
//! `--smoke` runs the README's curl walk-through once against the running demo, prints what it
//! saw, and stops everything: a check that the demo works, for people and for CI.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::build;

const ORIGIN: &str = "127.0.0.1:8000";
const GATEWAY: &str = "127.0.0.1:8359";
const ADMIN: &str = "127.0.0.1:8360";

/// Kills the child when dropped, so an early error never leaves servers behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command that runs `program` as a child that ends with this process, whichever signal ends
/// it (Ctrl-C reaches the whole process group, but `kill` or a closed terminal's SIGHUP reaches
/// only us, and no `Drop` runs then): Linux's parent-death signal, set by util-linux's `setpriv`
/// before it executes the program (`util-linux` is an essential package on Debian). SIGTERM, so
/// the servers shut down as they do when stopped by hand. Without `setpriv`, a plain command.
fn child_command(program: &Path, setpriv: bool) -> Command {
    if !setpriv {
        return Command::new(program);
    }
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "TERM", "--"]).arg(program);
    command
}

/// Whether `setpriv --pdeathsig` is available (util-linux 2.33 or later).
fn have_setpriv() -> bool {
    Command::new("setpriv")
        .arg("--help")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--pdeathsig")
        })
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let smoke = args.iter().any(|a| a == "--smoke");
    build::all(true)?;
    let root = build::root();
    let bin = root.join("target/release");

    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = redis_addr(&redis_url).filter(redis_ping);
    match &redis {
        Some(addr) => {
            let n = redis_clear(addr, "larder:*").unwrap_or(0);
            eprintln!(
                "demo: Redis answers at {redis_url}: caching in Redis (cleared {n} keys larder:* left by earlier demo runs, whose backend state is gone)"
            );
        }
        None => eprintln!(
            "demo: no Redis answers at {redis_url}: caching in the gateway's in-memory store instead (set REDIS_URL to use another Redis)"
        ),
    }

    for addr in [ORIGIN, GATEWAY, ADMIN] {
        if TcpStream::connect(addr).is_ok() {
            bail!("{addr} is already in use: is another demo running? Stop it first.");
        }
    }
    let setpriv = have_setpriv();
    if !setpriv {
        eprintln!(
            "demo: no `setpriv --pdeathsig` (util-linux): stop the demo with Ctrl-C; another signal would leave the servers running"
        );
    }
    let _origin = Guard(
        child_command(&bin.join("scat-origin"), setpriv)
            .args(["--listen", ORIGIN])
            .spawn()
            .context("starting scat-origin")?,
    );
    let mut larder = child_command(&bin.join("larder"), setpriv);
    larder
        .args(["serve", "--config", "larder.toml"])
        .current_dir(&root)
        .env("LARDER_LISTEN", "0.0.0.0:8359")
        .env("LARDER_ADMIN_LISTEN", ADMIN);
    match &redis {
        Some(_) => larder.env("REDIS_URL", &redis_url),
        None => larder.env_remove("REDIS_URL"),
    };
    let mut gateway = Guard(larder.spawn().context("starting larder")?);
    wait_until_up(&[ORIGIN, GATEWAY, ADMIN], &mut gateway.0)?;

    eprintln!(
        "\ndemo: up. The stand-in analysis backend is on http://{ORIGIN}, the gateway on http://{GATEWAY}, its admin API on http://{ADMIN}.\n\
         Try (see README.md, \"Walk-through\"):\n\
         \n  curl -si http://{GATEWAY}/api/v1/repositories/1/ai-features | grep -iE 'HTTP/|cache-status|age'   # slow: 1.2 s, a miss\
         \n  curl -si http://{GATEWAY}/api/v1/repositories/1/ai-features | grep -iE 'HTTP/|cache-status|age'   # fast: a hit\
         \n  curl -si -X POST 'http://{GATEWAY}/api/v1/repositories/1/actions/analyze?feature_type=complexity'\
         \n  curl -si http://{GATEWAY}/api/v1/repositories/1/ai-features | grep -iE 'HTTP/|cache-status|analysis_version'  # a miss again, new version\
         \n  curl -s http://{ADMIN}/health\n\
         \nCtrl-C (or any signal that ends this process) stops everything.\n"
    );

    if smoke {
        return walk_through();
    }
    let status = gateway.0.wait()?;
    if !status.success() {
        bail!("larder exited with {status}");
    }
    Ok(())
}

fn wait_until_up(addrs: &[&str], gateway: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for addr in addrs {
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = gateway.try_wait()? {
                bail!("larder exited during start-up ({status}); its log above says why");
            }
            if Instant::now() > deadline {
                bail!("{addr} did not come up within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// The README's walk-through, checked.
fn walk_through() -> anyhow::Result<()> {
    let path = "/api/v1/repositories/1/ai-features";
    let t = Instant::now();
    let first = http(GATEWAY, "GET", path)?;
    let slow = t.elapsed();
    let t = Instant::now();
    let second = http(GATEWAY, "GET", path)?;
    let fast = t.elapsed();
    let analyze = http(
        GATEWAY,
        "POST",
        "/api/v1/repositories/1/actions/analyze?feature_type=complexity",
    )?;
    let third = http(GATEWAY, "GET", path)?;
    let health = http(ADMIN, "GET", "/health")?;
    for (what, r, took) in [
        ("first GET ", &first, Some(slow)),
        ("second GET", &second, Some(fast)),
        ("analyze   ", &analyze, None),
        ("third GET ", &third, None),
    ] {
        eprintln!(
            "smoke: {what} -> {} cache-status: {}{}",
            r.status,
            r.header("cache-status").unwrap_or("-"),
            took.map(|t| format!(" ({:.1} ms)", t.as_secs_f64() * 1000.0))
                .unwrap_or_default()
        );
    }
    eprintln!("smoke: health -> {}", health.body.trim());
    let ok = first.status == 200
        && first
            .header("cache-status")
            .is_some_and(|s| s.contains("fwd=miss") && s.contains("stored"))
        && second
            .header("cache-status")
            .is_some_and(|s| s.contains("hit"))
        && second.body == first.body
        && analyze.status == 200
        && third
            .header("cache-status")
            .is_some_and(|s| s.contains("fwd=miss"))
        && third.body != first.body;
    if !ok {
        bail!("the walk-through did not behave as the README says");
    }
    eprintln!("smoke: the walk-through behaves as the README says");
    Ok(())
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request per connection, `Connection: close`.
fn http(addr: &str, method: &str, path: &str) -> anyhow::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn redis_addr(url: &str) -> Option<std::net::SocketAddr> {
    let rest = url.strip_prefix("redis://")?;
    let host_port = rest.rsplit('@').next()?.split('/').next()?;
    host_port.to_socket_addrs().ok()?.next()
}

fn redis_ping(addr: &std::net::SocketAddr) -> bool {
    redis_command(addr, &["PING"]).is_ok_and(|r| r.starts_with("+PONG"))
}

fn redis_command(addr: &std::net::SocketAddr, args: &[&str]) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(addr, Duration::from_millis(300))?;
    s.set_read_timeout(Some(Duration::from_millis(1000)))?;
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    // Read until the reply is complete enough for our two uses (PING, and one SCAN page).
    loop {
        let n = s.read(&mut buf[got..])?;
        got += n;
        if n == 0 || got == buf.len() || complete(&buf[..got]) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf[..got]).into_owned())
}

fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    if text.starts_with('+') || text.starts_with('-') || text.starts_with(':') {
        return text.ends_with("\r\n");
    }
    // SCAN: *2 $<n> cursor *<k> then k bulk strings.
    let lines: Vec<&str> = text.split("\r\n").collect();
    if lines.len() < 4 {
        return false;
    }
    let k: usize = lines[3].trim_start_matches('*').parse().unwrap_or(0);
    lines.len() > 4 + 2 * k
}

/// Deletes keys matching `pattern` with SCAN + UNLINK (never KEYS).
fn redis_clear(addr: &std::net::SocketAddr, pattern: &str) -> anyhow::Result<usize> {
    let mut cursor = "0".to_owned();
    let mut deleted = 0;
    loop {
        let reply = redis_command(addr, &["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"])?;
        let lines: Vec<&str> = reply.split("\r\n").collect();
        cursor = lines.get(2).context("bad SCAN reply")?.to_string();
        // *2, $len, cursor, *k, then k times: $len, key.
        let k: usize = lines
            .get(3)
            .and_then(|l| l.trim_start_matches('*').parse().ok())
            .unwrap_or(0);
        let keys: Vec<&str> = lines.iter().skip(5).step_by(2).take(k).copied().collect();
        if !keys.is_empty() {
            let mut args = vec!["UNLINK"];
            args.extend(keys.iter().copied());
            redis_command(addr, &args)?;
            deleted += keys.len();
        }
        if cursor == "0" {
            return Ok(deleted);
        }
    }
}
