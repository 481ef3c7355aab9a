//! `berth port NAME [PORT[/PROTO]]`: a running container's published ports,
//! as `docker port` lists them (`80/tcp -> 0.0.0.0:8080`), from its state
//! record (`supervise::state::State.published` and `.networks`).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::config::values::{parse_port, Protocol};

/// List a running container's published ports
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth port web            every mapping of web\n  berth port web 80/tcp     where web's port 80 is published"
)]
pub struct PortArgs {
    /// The container
    pub name: String,
    /// Only this container port (PORT or PORT/PROTO, PROTO tcp or udp)
    #[arg(value_name = "PORT[/PROTO]")]
    pub port: Option<String>,
}

/// `PORT[/PROTO]` of the filter.
fn parse_filter(s: &str) -> Result<(u16, Option<Protocol>), String> {
    let (port, proto) = match s.split_once('/') {
        Some((p, proto)) => (
            p,
            Some(Protocol::parse(proto).ok_or_else(|| {
                format!("unknown protocol \"{proto}\": expected \"tcp\" or \"udp\"")
            })?),
        ),
        None => (s, None),
    };
    let port = port
        .parse()
        .map_err(|_| format!("invalid port \"{port}\": expected a number from 1 to 65535"))?;
    Ok((port, proto))
}

/// The lines of `berth port`: one per container port and host address, in
/// the order the definition publishes them. A mapping without a host
/// address listens on every IPv4 address, and on every IPv6 one too when
/// the container has an IPv6 address to forward to (`has_v6`), which
/// Docker shows as a second line with `[::]`.
pub fn render_ports(
    published: &[String],
    has_v6: bool,
    filter: Option<(u16, Option<Protocol>)>,
) -> String {
    let mut out = String::new();
    for p in published {
        // The record holds what validation accepted: a line that no longer
        // parses (a newer berth's format) is skipped rather than guessed at.
        let Ok(m) = parse_port(p) else { continue };
        for (host, cont) in m.pairs() {
            if filter.is_some_and(|(port, proto)| {
                port != cont || proto.is_some_and(|pr| pr != m.protocol)
            }) {
                continue;
            }
            let hosts: Vec<String> = match m.host_ip {
                Some(std::net::IpAddr::V6(ip)) => vec![format!("[{ip}]")],
                Some(ip) => vec![ip.to_string()],
                None if has_v6 => vec!["0.0.0.0".into(), "[::]".into()],
                None => vec!["0.0.0.0".into()],
            };
            for h in hosts {
                out.push_str(&format!("{cont}/{} -> {h}:{host}\n", m.protocol));
            }
        }
    }
    out
}

pub fn run(root: &Path, args: PortArgs) -> anyhow::Result<ExitCode> {
    let filter = args
        .port
        .as_deref()
        .map(parse_filter)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let g = crate::config::load_globals(root)?;
    let r = match crate::containers::running(root, &g, &args.name) {
        Ok(r) => r,
        Err(_) => anyhow::bail!(
            "container \"{}\" is not running: its ports are published only while it runs (`berth start {}`)",
            args.name,
            args.name
        ),
    };
    let has_v6 = r.state.networks.first().is_some_and(|a| a.ipv6.is_some());
    let text = render_ports(&r.state.published, has_v6, filter);
    if text.is_empty() {
        if let Some(p) = &args.port {
            anyhow::bail!("container \"{}\" does not publish port {p}", args.name);
        }
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_docker_port_prints_them() {
        let published = [
            "8080:80/tcp".to_string(),
            "127.0.0.1:8443:443/tcp".to_string(),
            "5353:53/udp".to_string(),
            "8000-8001:90-91/tcp".to_string(),
            "[2001:db8::1]:9000:9000/tcp".to_string(),
        ];
        assert_eq!(
            render_ports(&published, false, None),
            "80/tcp -> 0.0.0.0:8080\n\
             443/tcp -> 127.0.0.1:8443\n\
             53/udp -> 0.0.0.0:5353\n\
             90/tcp -> 0.0.0.0:8000\n\
             91/tcp -> 0.0.0.0:8001\n\
             9000/tcp -> [2001:db8::1]:9000\n"
        );
        assert_eq!(
            render_ports(&published[..1], true, None),
            "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
        );
    }

    #[test]
    fn a_filter_picks_one_container_port() {
        let published = ["8080:80".to_string(), "5353:53/udp".to_string()];
        let f = parse_filter("53").unwrap();
        assert_eq!(
            render_ports(&published, false, Some(f)),
            "53/udp -> 0.0.0.0:5353\n"
        );
        let f = parse_filter("53/tcp").unwrap();
        assert_eq!(render_ports(&published, false, Some(f)), "");
        assert!(parse_filter("x/tcp").is_err());
        assert!(parse_filter("53/sctp").is_err());
    }
}
