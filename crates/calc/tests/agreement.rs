//! Explain agrees with the dataplane: for random clusters, every pair of
//! local workloads and a spread of packets, the verdict explain gives for
//! egress at the source and ingress at the destination equals what the
//! compiled local state (interpreted as the dataplane would) does.

mod common;

use std::net::IpAddr;

use common::calculator;
use common::sim::{SimPacket, chain_allows};
use common::states::{self, LOCAL};
use proptest::prelude::*;
use tortie_calc::explain::{Peer, Request, Verdict, explain};
use tortie_calc::policy::Direction;
use tortie_calc::state::LocalWorkloadEndpoint;

/// (protocol, destination port, ICMP type and code)
type Packet = (u8, Option<u16>, Option<(u8, u8)>);

const PACKETS: [Packet; 7] = [
    (6, Some(80), None),
    (6, Some(8080), None),
    (6, Some(443), None),
    (17, Some(53), None),
    (17, Some(5000), None),
    (1, None, Some((8, 0))),
    (132, Some(80), None),
];

fn first_v4(w: &LocalWorkloadEndpoint) -> Option<IpAddr> {
    w.ipv4.first().map(|n| IpAddr::V4(n.addr()))
}

fn check(seed: u64) {
    for ds in states::sequence(seed, 2) {
        let calc = calculator(LOCAL, &ds);
        let s = calc.local_state();
        let externals: [IpAddr; 3] = [
            "198.51.100.7".parse().unwrap(),
            "203.0.113.3".parse().unwrap(),
            "10.65.0.70".parse().unwrap(),
        ];
        let weps: Vec<&LocalWorkloadEndpoint> = s.workload_endpoints.values().collect();
        for src in &weps {
            let Some(src_ip) = first_v4(src) else {
                continue;
            };
            let mut targets: Vec<(Peer, IpAddr, Option<&LocalWorkloadEndpoint>)> = weps
                .iter()
                .filter_map(|d| first_v4(d).map(|ip| (Peer::Workload(d.id.clone()), ip, Some(*d))))
                .collect();
            targets.extend(externals.iter().map(|ip| (Peer::Address(*ip), *ip, None)));
            for (dst_peer, dst_ip, dst_wep) in targets {
                for (protocol, port, icmp) in PACKETS {
                    let req = Request {
                        from: Peer::Workload(src.id.clone()),
                        to: dst_peer.clone(),
                        protocol,
                        dst_port: port,
                        src_port: Some(40000),
                        icmp,
                        family: Some(tortie_calc::rules::IpFamily::V4),
                    };
                    let e = explain(calc.model(), &req).expect("explainable");
                    let pkt = SimPacket {
                        protocol,
                        src: src_ip,
                        dst: dst_ip,
                        src_port: Some(40000),
                        dst_port: port,
                        icmp,
                    };
                    let eg = chain_allows(s, &src.egress, Direction::Egress, &pkt);
                    let explained = e.egress.as_ref().expect("source is an endpoint");
                    assert_eq!(
                        explained.verdict == Verdict::Allow,
                        eg,
                        "egress of {} for {req:?}: explain says {explained:?}",
                        src.id
                    );
                    if let Some(d) = dst_wep {
                        let ing = chain_allows(s, &d.ingress, Direction::Ingress, &pkt);
                        let explained = e.ingress.as_ref().expect("destination is an endpoint");
                        assert_eq!(
                            explained.verdict == Verdict::Allow,
                            ing,
                            "ingress of {} for {req:?}: explain says {explained:?}",
                            d.id
                        );
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn explain_agrees_with_the_compiled_dataplane(seed in any::<u64>()) {
        check(seed);
    }
}
