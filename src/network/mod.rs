//! network: bridge networking (issue 14), as a pure plan and a small apply
//! layer. So far only the plan is built: which networks exist and their
//! resolved ranges (`config`), the address leases (`ipam`, small file I/O
//! under `/run/berth/networks/`), and the nftables rule set as data with its
//! `nft -f` text (`plan`). Nothing here creates links or loads rules yet, and
//! nothing on the start path calls it: a bridge-mode container still gets
//! loopback only, and says so when it starts.

pub mod config;
pub mod dns;
pub mod ipam;
pub mod plan;
