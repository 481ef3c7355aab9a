//! dns: the name server of bridge networks, `berth dns` (run as
//! `units/berth-dns.service`). It listens on port 53 of the gateway
//! address(es) of every network with `dns = true`, answers a member's name
//! or alias (from the lease files) to members of the same networks, and
//! forwards every other query to the container's own `dns` servers or the
//! host's resolv.conf nameservers, from the host's network namespace (where
//! systemd-resolved's 127.0.0.53 is reachable).
//!
//! `codec` (DNS messages) and `names` (leases, lookup, resolv.conf) are
//! pure; `server` is the socket loop.

pub mod codec;
pub mod names;
pub mod server;

pub use server::{run, DnsError};
