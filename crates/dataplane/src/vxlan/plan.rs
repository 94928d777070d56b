//! The VXLAN reconciler's pure core: the desired device and remote VTEPs,
//! what was read from the kernel, and the diff between them as an ordered
//! list of operations. No I/O.
//!
//! Order: the device first (created, or deleted and recreated when a
//! parameter that cannot change in place drifted: kind, VNI, port, local
//! address, parent, learning); then — on the device as it now is — MTU,
//! MAC and admin state in place, the tunnel address, neighbour entries and
//! FDB entries. A (re)created device has none of the latter, so after a
//! device operation the rest is planned from a fresh read.
//!
//! Hard cases: the device is ours by name, so every permanent neighbour
//! and every FDB entry on it that is not wanted is removed, while dynamic
//! neighbour entries (kernel-made, they expire) and IPv6 link-local
//! addresses are left to the kernel; two VTEPs claiming the same MAC or
//! tunnel address cannot both be programmed — the first by node name
//! wins and the clash is reported.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

/// The VXLAN device tortie wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanDevice {
    pub vni: u32,
    pub port: u16,
    /// The node's IP (source of the encapsulated packets); its family is
    /// the device's.
    pub local: IpAddr,
    /// The interface that holds `local`; `None`: found by address.
    pub parent: Option<String>,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// The node's tunnel address, installed as a /32 (/128).
    pub tunnel_addr: IpAddr,
}

impl VxlanDevice {
    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }

    /// The tunnel address with a host prefix.
    pub fn tunnel_net(&self) -> IpNet {
        IpNet::from(self.tunnel_addr)
    }
}

/// A remote node's VXLAN endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vtep {
    /// Where encapsulated packets go (FDB `dst`).
    pub node_ip: IpAddr,
    /// The peer's tunnel address (neighbour entry).
    pub tunnel_ip: IpAddr,
    /// The peer's VTEP MAC.
    pub mac: [u8; 6],
}

/// The VXLAN device as read from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledDevice {
    pub index: u32,
    /// IFLA_INFO_KIND; anything but `vxlan` under our name is replaced.
    pub kind: Option<String>,
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
    pub parent: Option<u32>,
    pub learning: Option<bool>,
    pub mtu: u32,
    pub mac: Vec<u8>,
    pub admin_up: bool,
}

/// One FDB entry of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub dst: Option<IpAddr>,
    pub permanent: bool,
}

/// One neighbour entry of the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub mac: Vec<u8>,
    pub permanent: bool,
}

/// Everything read about the device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    pub device: Option<InstalledDevice>,
    /// Addresses of the device's family (IPv6 link-local excluded).
    pub addrs: Vec<IpNet>,
    pub neighbours: HashMap<IpAddr, NeighbourEntry>,
    pub fdb: HashMap<[u8; 6], FdbEntry>,
}

/// One kernel operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VxlanOp {
    DeleteDevice {
        index: u32,
        reason: String,
    },
    /// Create the desired device on parent link `parent`.
    CreateDevice {
        parent: u32,
    },
    /// Change MTU / MAC / admin state in place.
    SetDevice {
        index: u32,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        up: bool,
    },
    AddAddress {
        index: u32,
        addr: IpNet,
    },
    DeleteAddress {
        index: u32,
        addr: IpNet,
    },
    SetNeighbour {
        index: u32,
        ip: IpAddr,
        mac: [u8; 6],
    },
    DeleteNeighbour {
        index: u32,
        ip: IpAddr,
    },
    SetFdb {
        index: u32,
        mac: [u8; 6],
        dst: IpAddr,
    },
    DeleteFdb {
        index: u32,
        mac: [u8; 6],
    },
}

impl VxlanOp {
    /// Whether this changes the device itself (the rest must then be
    /// planned from a fresh read).
    pub fn recreates(&self) -> bool {
        matches!(
            self,
            VxlanOp::DeleteDevice { .. } | VxlanOp::CreateDevice { .. }
        )
    }
}

/// Why the device cannot be programmed yet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error("no interface holds the node address {0}; the VXLAN device waits for it")]
    NoParent(IpAddr),
}

/// Why an installed device must be recreated, if it must.
fn drift(want: &VxlanDevice, parent: u32, have: &InstalledDevice) -> Option<String> {
    if have.kind.as_deref() != Some("vxlan") {
        return Some(format!("it is a {:?} device, not vxlan", have.kind));
    }
    if have.vni != Some(want.vni) {
        return Some(format!("VNI {:?}, want {}", have.vni, want.vni));
    }
    if have.port != Some(want.port) {
        return Some(format!("port {:?}, want {}", have.port, want.port));
    }
    if have.local != Some(want.local) {
        return Some(format!("local {:?}, want {}", have.local, want.local));
    }
    if have.parent != Some(parent) {
        return Some(format!("parent {:?}, want {parent}", have.parent));
    }
    if have.learning != Some(false) {
        return Some("learning is on".to_string());
    }
    None
}

/// The VTEPs that can be programmed: sorted by node name, without MAC or
/// tunnel address clashes (reported in the second list).
pub fn usable_vteps(vteps: &BTreeMap<String, Vtep>) -> (Vec<Vtep>, Vec<String>) {
    let mut macs = HashMap::new();
    let mut ips = HashMap::new();
    let mut usable = Vec::new();
    let mut clashes = Vec::new();
    for (node, vtep) in vteps {
        if let Some(other) = macs.get(&vtep.mac).or_else(|| ips.get(&vtep.tunnel_ip)) {
            clashes.push(format!("{node} clashes with {other}"));
            continue;
        }
        macs.insert(vtep.mac, node.clone());
        ips.insert(vtep.tunnel_ip, node.clone());
        usable.push(*vtep);
    }
    (usable, clashes)
}

/// The operations that make the kernel match: `desired` device (or none:
/// delete ours), remote `vteps`, the index of the parent interface (found
/// by the caller), and what was read.
pub fn plan(
    desired: Option<&VxlanDevice>,
    vteps: &[Vtep],
    parent: Option<u32>,
    installed: &Installed,
) -> Result<Vec<VxlanOp>, Blocked> {
    let Some(want) = desired else {
        return Ok(installed
            .device
            .iter()
            .map(|d| VxlanOp::DeleteDevice {
                index: d.index,
                reason: "VXLAN is not wanted".to_string(),
            })
            .collect());
    };
    let parent = parent.ok_or(Blocked::NoParent(want.local))?;
    let have = match &installed.device {
        None => return Ok(vec![VxlanOp::CreateDevice { parent }]),
        Some(have) => match drift(want, parent, have) {
            Some(reason) => {
                return Ok(vec![
                    VxlanOp::DeleteDevice {
                        index: have.index,
                        reason,
                    },
                    VxlanOp::CreateDevice { parent },
                ]);
            }
            None => have,
        },
    };
    let index = have.index;
    let mut ops = Vec::new();
    let mtu = (have.mtu != want.mtu).then_some(want.mtu);
    let mac = (have.mac != want.mac).then_some(want.mac);
    if mtu.is_some() || mac.is_some() || !have.admin_up {
        ops.push(VxlanOp::SetDevice {
            index,
            mtu,
            mac,
            up: true,
        });
    }
    let tunnel = want.tunnel_net();
    for addr in installed.addrs.iter().filter(|a| **a != tunnel) {
        ops.push(VxlanOp::DeleteAddress { index, addr: *addr });
    }
    if !installed.addrs.contains(&tunnel) {
        ops.push(VxlanOp::AddAddress {
            index,
            addr: tunnel,
        });
    }

    let wanted_neigh: HashMap<IpAddr, [u8; 6]> =
        vteps.iter().map(|v| (v.tunnel_ip, v.mac)).collect();
    let mut stale_neigh: Vec<IpAddr> = installed
        .neighbours
        .iter()
        .filter(|(ip, n)| n.permanent && !wanted_neigh.contains_key(ip))
        .map(|(ip, _)| *ip)
        .collect();
    stale_neigh.sort();
    ops.extend(
        stale_neigh
            .into_iter()
            .map(|ip| VxlanOp::DeleteNeighbour { index, ip }),
    );
    let wanted_fdb: HashMap<[u8; 6], IpAddr> = vteps.iter().map(|v| (v.mac, v.node_ip)).collect();
    let mut stale_fdb: Vec<[u8; 6]> = installed
        .fdb
        .keys()
        .filter(|mac| !wanted_fdb.contains_key(*mac))
        .copied()
        .collect();
    stale_fdb.sort();
    ops.extend(
        stale_fdb
            .into_iter()
            .map(|mac| VxlanOp::DeleteFdb { index, mac }),
    );

    for vtep in vteps {
        let neigh_ok = installed
            .neighbours
            .get(&vtep.tunnel_ip)
            .is_some_and(|n| n.permanent && n.mac == vtep.mac);
        if !neigh_ok {
            ops.push(VxlanOp::SetNeighbour {
                index,
                ip: vtep.tunnel_ip,
                mac: vtep.mac,
            });
        }
        let fdb_ok = installed
            .fdb
            .get(&vtep.mac)
            .is_some_and(|f| f.permanent && f.dst == Some(vtep.node_ip));
        if !fdb_ok {
            ops.push(VxlanOp::SetFdb {
                index,
                mac: vtep.mac,
                dst: vtep.node_ip,
            });
        }
    }
    Ok(ops)
}

/// Folds a successful operation into `installed`, so the next plan
/// (before the next read) does not repeat it.
pub fn record(installed: &mut Installed, op: &VxlanOp) {
    match op {
        VxlanOp::DeleteDevice { .. } | VxlanOp::CreateDevice { .. } => {
            // The device's index and contents are unknown until re-read.
            *installed = Installed::default();
        }
        VxlanOp::SetDevice { mtu, mac, up, .. } => {
            if let Some(d) = installed.device.as_mut() {
                if let Some(mtu) = mtu {
                    d.mtu = *mtu;
                }
                if let Some(mac) = mac {
                    d.mac = mac.to_vec();
                }
                d.admin_up = *up;
            }
        }
        VxlanOp::AddAddress { addr, .. } => installed.addrs.push(*addr),
        VxlanOp::DeleteAddress { addr, .. } => installed.addrs.retain(|a| a != addr),
        VxlanOp::SetNeighbour { ip, mac, .. } => {
            installed.neighbours.insert(
                *ip,
                NeighbourEntry {
                    mac: mac.to_vec(),
                    permanent: true,
                },
            );
        }
        VxlanOp::DeleteNeighbour { ip, .. } => {
            installed.neighbours.remove(ip);
        }
        VxlanOp::SetFdb { mac, dst, .. } => {
            installed.fdb.insert(
                *mac,
                FdbEntry {
                    dst: Some(*dst),
                    permanent: true,
                },
            );
        }
        VxlanOp::DeleteFdb { mac, .. } => {
            installed.fdb.remove(mac);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: [u8; 6] = [0x66, 1, 2, 3, 4, 5];
    const MAC_B: [u8; 6] = [0x66, 9, 9, 9, 9, 9];

    fn device() -> VxlanDevice {
        VxlanDevice {
            vni: 4096,
            port: 4789,
            local: "192.168.1.10".parse().expect("ip"),
            parent: None,
            mac: MAC_A,
            mtu: 1450,
            tunnel_addr: "10.244.0.0".parse().expect("ip"),
        }
    }

    fn installed_ok() -> Installed {
        Installed {
            device: Some(InstalledDevice {
                index: 7,
                kind: Some("vxlan".into()),
                vni: Some(4096),
                port: Some(4789),
                local: Some("192.168.1.10".parse().expect("ip")),
                parent: Some(2),
                learning: Some(false),
                mtu: 1450,
                mac: MAC_A.to_vec(),
                admin_up: true,
            }),
            addrs: vec!["10.244.0.0/32".parse().expect("net")],
            neighbours: HashMap::new(),
            fdb: HashMap::new(),
        }
    }

    fn peer() -> Vtep {
        Vtep {
            node_ip: "192.168.1.11".parse().expect("ip"),
            tunnel_ip: "10.244.1.0".parse().expect("ip"),
            mac: MAC_B,
        }
    }

    #[test]
    fn creates_a_missing_device_then_fills_it() {
        let want = device();
        let ops = plan(Some(&want), &[peer()], Some(2), &Installed::default()).expect("plan");
        assert_eq!(ops, vec![VxlanOp::CreateDevice { parent: 2 }]);
        assert!(ops[0].recreates());

        let mut have = installed_ok();
        have.addrs.clear();
        let ops = plan(Some(&want), &[peer()], Some(2), &have).expect("plan");
        assert_eq!(
            ops,
            vec![
                VxlanOp::AddAddress {
                    index: 7,
                    addr: "10.244.0.0/32".parse().expect("net"),
                },
                VxlanOp::SetNeighbour {
                    index: 7,
                    ip: peer().tunnel_ip,
                    mac: MAC_B,
                },
                VxlanOp::SetFdb {
                    index: 7,
                    mac: MAC_B,
                    dst: peer().node_ip,
                },
            ]
        );
        for op in &ops {
            record(&mut have, op);
        }
        assert_eq!(plan(Some(&want), &[peer()], Some(2), &have), Ok(vec![]));
    }

    #[test]
    fn parameter_drift_recreates_and_in_place_drift_is_set() {
        let want = device();
        for mutate in [
            (|d: &mut InstalledDevice| d.vni = Some(1)) as fn(&mut InstalledDevice),
            |d| d.port = Some(8472),
            |d| d.local = Some("192.168.1.99".parse().expect("ip")),
            |d| d.parent = Some(3),
            |d| d.learning = Some(true),
            |d| d.kind = Some("veth".into()),
        ] {
            let mut have = installed_ok();
            if let Some(d) = have.device.as_mut() {
                mutate(d);
            }
            let ops = plan(Some(&want), &[], Some(2), &have).expect("plan");
            assert!(
                matches!(
                    &ops[..],
                    [
                        VxlanOp::DeleteDevice { index: 7, .. },
                        VxlanOp::CreateDevice { parent: 2 }
                    ]
                ),
                "{ops:?}"
            );
        }
        let mut have = installed_ok();
        if let Some(d) = have.device.as_mut() {
            d.mtu = 1500;
            d.admin_up = false;
        }
        assert_eq!(
            plan(Some(&want), &[], Some(2), &have),
            Ok(vec![VxlanOp::SetDevice {
                index: 7,
                mtu: Some(1450),
                mac: None,
                up: true,
            }])
        );
    }

    #[test]
    fn stale_and_drifted_entries_are_repaired() {
        let want = device();
        let mut have = installed_ok();
        have.addrs.push("10.9.9.9/32".parse().expect("net"));
        have.neighbours.insert(
            "10.244.9.0".parse().expect("ip"),
            NeighbourEntry {
                mac: vec![1; 6],
                permanent: true,
            },
        );
        have.neighbours.insert(
            "10.244.8.0".parse().expect("ip"),
            NeighbourEntry {
                mac: vec![2; 6],
                permanent: false,
            },
        );
        // The peer's FDB entry points at the wrong node IP.
        have.fdb.insert(
            MAC_B,
            FdbEntry {
                dst: Some("192.168.1.99".parse().expect("ip")),
                permanent: true,
            },
        );
        have.fdb.insert(
            [1; 6],
            FdbEntry {
                dst: None,
                permanent: true,
            },
        );
        let ops = plan(Some(&want), &[peer()], Some(2), &have).expect("plan");
        assert_eq!(
            ops,
            vec![
                VxlanOp::DeleteAddress {
                    index: 7,
                    addr: "10.9.9.9/32".parse().expect("net"),
                },
                VxlanOp::DeleteNeighbour {
                    index: 7,
                    ip: "10.244.9.0".parse().expect("ip"),
                },
                VxlanOp::DeleteFdb {
                    index: 7,
                    mac: [1; 6],
                },
                VxlanOp::SetNeighbour {
                    index: 7,
                    ip: peer().tunnel_ip,
                    mac: MAC_B,
                },
                VxlanOp::SetFdb {
                    index: 7,
                    mac: MAC_B,
                    dst: peer().node_ip,
                },
            ]
        );
    }

    #[test]
    fn no_parent_blocks_and_no_device_wanted_deletes_ours() {
        let want = device();
        assert_eq!(
            plan(Some(&want), &[], None, &Installed::default()),
            Err(Blocked::NoParent(want.local))
        );
        let ops = plan(None, &[], None, &installed_ok()).expect("plan");
        assert!(matches!(&ops[..], [VxlanOp::DeleteDevice { index: 7, .. }]));
        assert_eq!(plan(None, &[], None, &Installed::default()), Ok(vec![]));
    }

    #[test]
    fn clashing_vteps_are_reported_not_programmed() {
        let mut vteps = BTreeMap::new();
        vteps.insert("node-b".to_string(), peer());
        vteps.insert(
            "node-c".to_string(),
            Vtep {
                node_ip: "192.168.1.12".parse().expect("ip"),
                ..peer()
            },
        );
        let (usable, clashes) = usable_vteps(&vteps);
        assert_eq!(usable, vec![peer()]);
        assert_eq!(clashes, vec!["node-c clashes with node-b".to_string()]);
    }
}
