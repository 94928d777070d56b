//! IPIP detection against the real kernel (needs root): the probe's answer
//! agrees with what iproute2 can do in the same namespace, names its reason
//! when the answer is no, and leaves no probe link behind. (This project's
//! machine has no IPIP, so here the answer is "unsupported"; a kernel with
//! IPIP answers "supported" and has `tunl0`.)

use anyhow::{Result, ensure};
use tortie_dataplane::ipip::{self, IpipSupport};
use tortie_dataplane::netlink::RtSocket;
use tortie_testkit::TestNetns;

#[test]
fn root_ipip_probe_tells_the_truth() -> Result<()> {
    let ns = TestNetns::new("ipip")?;
    let support = ns.block_on(|| async {
        let mut socket = RtSocket::open()?;
        ipip::probe(&mut socket).await
    })??;
    println!("IPIP on this kernel: {support:?}");
    let links = ns.ip_json(&["link", "show"])?;
    ensure!(
        !links.iter().any(|l| l["ifname"] == ipip::PROBE_DEVICE),
        "probe link left behind"
    );
    let by_iproute = ns.ip(&["link", "add", "iproute2probe", "type", "ipip"]);
    match &support {
        IpipSupport::Supported => {
            ensure!(by_iproute.is_ok(), "iproute2 cannot create ipip links");
            ensure!(
                links.iter().any(|l| l["ifname"] == ipip::DEVICE),
                "no tunl0 although IPIP works"
            );
        }
        IpipSupport::Unsupported { reason } => {
            ensure!(by_iproute.is_err(), "iproute2 can create ipip links");
            ensure!(reason.contains("CONFIG_NET_IPIP"), "{reason}");
        }
    }
    // Asking twice gives the same answer (nothing left half-done).
    let again = ns.block_on(|| async {
        let mut socket = RtSocket::open()?;
        ipip::probe(&mut socket).await
    })??;
    ensure!(again == support, "{again:?} then {support:?}");
    Ok(())
}
