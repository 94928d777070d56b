//! The IPAM configuration singleton (ipam.md §2.4): its effective values
//! and the write-time validation.
//!
//! The stored record is `tortie_client::codec::IpamConfigRecord` (the same
//! JSON `tortie apply` writes for an IPAMConfiguration), so both paths agree
//! on the format; this module adds defaults for an absent key and the rules.

use std::time::Duration;

use tortie_client::codec::IpamConfigRecord;

use crate::error::IpamError;

/// The block cap when neither the request nor the config sets one (§3.4).
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;
/// Upper bound of `ipCooldownSeconds`.
pub const MAX_COOLDOWN_SECONDS: u32 = 1200;

/// Effective IPAM configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    pub strict_affinity: bool,
    pub auto_allocate_blocks: bool,
    /// 0 = unset.
    pub max_blocks_per_host: u32,
    pub ip_cooldown_seconds: u32,
    pub kubevirt_vm_address_persistence: Option<String>,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
            ip_cooldown_seconds: 0,
            kubevirt_vm_address_persistence: None,
        }
    }
}

impl IpamConfig {
    /// The effective config from a stored record (negative numbers, which
    /// validation forbids, read as 0).
    pub fn from_record(r: &IpamConfigRecord) -> IpamConfig {
        IpamConfig {
            strict_affinity: r.strict_affinity,
            auto_allocate_blocks: r.auto_allocate_blocks,
            max_blocks_per_host: u32::try_from(r.max_blocks_per_host.max(0)).unwrap_or(u32::MAX),
            ip_cooldown_seconds: r
                .ip_cooldown_seconds
                .map(|s| u32::try_from(s.max(0)).unwrap_or(u32::MAX))
                .unwrap_or(0),
            kubevirt_vm_address_persistence: r.kubevirt_vm_address_persistence.clone(),
        }
    }

    /// The record to store.
    pub fn to_record(&self) -> IpamConfigRecord {
        IpamConfigRecord {
            strict_affinity: self.strict_affinity,
            auto_allocate_blocks: self.auto_allocate_blocks,
            max_blocks_per_host: i64::from(self.max_blocks_per_host),
            kubevirt_vm_address_persistence: self.kubevirt_vm_address_persistence.clone(),
            ip_cooldown_seconds: Some(i64::from(self.ip_cooldown_seconds)),
        }
    }

    /// The write-time rules of §2.4.
    pub fn validate(&self) -> Result<(), IpamError> {
        if !self.strict_affinity && !self.auto_allocate_blocks {
            return Err(IpamError::InvalidConfig(
                "autoAllocateBlocks cannot be false while strictAffinity is false".to_string(),
            ));
        }
        if self.max_blocks_per_host > 0 && !self.strict_affinity {
            return Err(IpamError::InvalidConfig(format!(
                "maxBlocksPerHost {} requires strictAffinity: true",
                self.max_blocks_per_host
            )));
        }
        if self.max_blocks_per_host > i32::MAX as u32 {
            return Err(IpamError::InvalidConfig(format!(
                "maxBlocksPerHost {} is larger than {}",
                self.max_blocks_per_host,
                i32::MAX
            )));
        }
        if self.ip_cooldown_seconds > MAX_COOLDOWN_SECONDS {
            return Err(IpamError::InvalidConfig(format!(
                "ipCooldownSeconds {} is larger than {MAX_COOLDOWN_SECONDS}",
                self.ip_cooldown_seconds
            )));
        }
        if let Some(p) = &self.kubevirt_vm_address_persistence
            && p != "Enabled"
            && p != "Disabled"
        {
            return Err(IpamError::InvalidConfig(format!(
                "kubeVirtVMAddressPersistence {p:?} must be Enabled or Disabled"
            )));
        }
        Ok(())
    }

    pub fn cooldown(&self) -> Duration {
        Duration::from_secs(u64::from(self.ip_cooldown_seconds))
    }

    /// The block cap for a request (§3.4 step 2): the smaller of the
    /// request's and the config's caps, 0 meaning unset; 20 if both unset.
    pub fn block_cap(&self, requested: Option<u32>) -> u32 {
        let caps = [requested.unwrap_or(0), self.max_blocks_per_host];
        caps.into_iter()
            .filter(|c| *c > 0)
            .min()
            .unwrap_or(DEFAULT_MAX_BLOCKS_PER_HOST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_caps() {
        let c = IpamConfig::default();
        assert_eq!(c.block_cap(None), 20);
        assert_eq!(c.block_cap(Some(0)), 20);
        assert_eq!(c.block_cap(Some(3)), 3);
        let c = IpamConfig {
            strict_affinity: true,
            max_blocks_per_host: 5,
            ..IpamConfig::default()
        };
        assert_eq!(c.block_cap(None), 5);
        assert_eq!(c.block_cap(Some(7)), 5);
        assert_eq!(c.block_cap(Some(2)), 2);
    }

    #[test]
    fn validation_rules() {
        let ok = IpamConfig::default();
        assert!(ok.validate().is_ok());
        let bad = IpamConfig {
            auto_allocate_blocks: false,
            ..IpamConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = IpamConfig {
            max_blocks_per_host: 1,
            ..IpamConfig::default()
        };
        assert!(bad.validate().is_err());
        let good = IpamConfig {
            strict_affinity: true,
            max_blocks_per_host: 1,
            auto_allocate_blocks: false,
            ..IpamConfig::default()
        };
        assert!(good.validate().is_ok());
        let bad = IpamConfig {
            ip_cooldown_seconds: 1201,
            ..IpamConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn record_round_trip_keeps_the_cooldown() {
        let c = IpamConfig {
            strict_affinity: true,
            ip_cooldown_seconds: 30,
            ..IpamConfig::default()
        };
        let json = serde_json::to_string(&c.to_record()).expect("json");
        assert_eq!(
            json,
            r#"{"strict_affinity":true,"auto_allocate_blocks":true,"maxBlocksPerHost":0,"ipCooldownSeconds":30}"#
        );
        let back: IpamConfigRecord = serde_json::from_str(&json).expect("decode");
        assert_eq!(IpamConfig::from_record(&back), c);
        let absent: IpamConfigRecord = serde_json::from_str("{}").expect("decode");
        assert_eq!(IpamConfig::from_record(&absent), IpamConfig::default());
    }
}
