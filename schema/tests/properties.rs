//! Property tests for the arithmetic every manifest leans on: cidrhost and sizes.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use pve_gitops_schema::net::cidrhost;
use pve_gitops_schema::units::{Bytes, DiskSize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

proptest! {
    /// Every in-range offset lands inside the subnet, at network + offset.
    #[test]
    fn cidrhost_v4_in_subnet(addr in any::<u32>(), prefix in 0u8..=32, offset in any::<u64>()) {
        let net = Ipv4Net::new(Ipv4Addr::from(addr), prefix).unwrap().trunc();
        let size = 1u64 << (32 - prefix as u32);
        let offset = offset % (size * 2); // half in range, half past the end
        match cidrhost(IpNet::V4(net), offset as i64) {
            Ok(IpAddr::V4(a)) => {
                prop_assert!(offset < size);
                prop_assert!(net.contains(&a));
                prop_assert_eq!(u32::from(a) as u64 - u32::from(net.network()) as u64, offset);
            }
            Ok(_) => prop_assert!(false, "v4 net gave v6 address"),
            Err(e) => {
                prop_assert!(offset >= size);
                prop_assert!(e.contains("past the end"));
            }
        }
    }

    /// Negative offsets count back from the last address.
    #[test]
    fn cidrhost_negative_mirrors_positive(addr in any::<u128>(), prefix in 64u8..=128, back in 1u64..1000) {
        let net = Ipv6Net::new(Ipv6Addr::from(addr), prefix).unwrap().trunc();
        let size: u128 = 1u128 << (128 - prefix as u32);
        let res = cidrhost(IpNet::V6(net), -(back as i64));
        if (back as u128) <= size {
            let pos = cidrhost(IpNet::V6(net), (size - back as u128) as i64).unwrap();
            prop_assert_eq!(res.unwrap(), pos);
        } else {
            prop_assert!(res.is_err());
        }
    }

    /// The canonical PVE spelling of a size parses back to the same size.
    #[test]
    fn size_spelling_round_trips(mib in 1u64..(1u64 << 30)) {
        let b = Bytes(mib * 1024 * 1024);
        let d: DiskSize = b.pve().parse().unwrap();
        prop_assert_eq!(d.bytes(), b.0);
    }
}
