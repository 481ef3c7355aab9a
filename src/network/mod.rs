//! network: bridge networking (issue 14), as a pure plan and a small apply
//! layer: which networks exist and their resolved ranges (`config`), the
//! address leases (`ipam`, small file I/O under `/run/berth/leases/`), the
//! nftables rule set as data with its `nft -f` text (`plan`), links by
//! rtnetlink (`link`), applying a transaction (`nft`), a start's elements
//! straight to the kernel (`nftnl`), and the steps a start takes and a stop
//! undoes (`attach`).

pub mod attach;
pub mod config;
pub mod dns;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod nftnl;
pub mod plan;
