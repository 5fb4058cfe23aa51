//! This host's side of the network: its interfaces and addresses ([`host`], read and changed
//! through [`netlink`]), the VIPs ([`vip`]) and the plan that turns a decision into address
//! changes ([`plan`], [`apply`]), the frames that tell neighbours ([`announce`]), and the frames
//! that show another host claiming a VIP ([`defend`]).

pub mod announce;
pub mod apply;
pub mod defend;
pub mod host;
pub mod netlink;
pub mod plan;
pub mod vip;
