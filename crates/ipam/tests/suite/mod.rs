//! The IPAM adapter suite: every case takes a [`fixture::Target`] (a fresh,
//! empty store) and runs unchanged on any datastore backend.
//!
//! A backend's test file declares `#[macro_use] mod suite;` at its crate
//! root and invokes `ipam_suite!(make_target)`, where `make_target()`
//! returns `anyhow::Result<(guard, Target)>`: a fresh store reachable
//! through `Target::spec` from this process and from child processes, kept
//! alive by `guard`. `tests/embedded.rs` does this for the embedded backend;
//! the same line with an etcd target runs the suite on etcd.
//!
//! Layout: `fixture` (stores, resources, raw reads), `assign`, `claim`,
//! `release`, `inspect` (check, tunnels) and `concurrency` (tasks,
//! processes, SIGKILL).

pub mod assign;
pub mod claim;
pub mod concurrency;
pub mod fixture;
pub mod inspect;
pub mod release;

/// Generates one test per case for a backend; see the module comment. Must
/// be invoked at the root of the test crate (child processes re-run the
/// test binary selecting `ipam_child_process` by name).
macro_rules! ipam_suite {
    ($make:path) => {
        ipam_suite!(@current_thread $make,
            assign::claims_an_affine_block_and_fills_it_in_order,
            assign::full_blocks_lead_to_new_claims_and_the_default_cap,
            assign::max_blocks_per_host_from_config_and_request,
            assign::borrowing_and_strict_affinity,
            assign::pool_selection_follows_selectors_uses_and_modes,
            assign::reservations_are_never_handed_out,
            assign::ipv6_and_dual_stack,
            assign::specific_addresses,
            assign::windows_hosts_reserve_block_ends,
            claim::pending_affinity_without_block_is_finished,
            claim::block_with_pending_affinity_is_confirmed_after_a_rewrite,
            claim::pending_deletion_affinity_is_recovered,
            claim::block_without_affinity_key_is_adopted,
            claim::confirmed_affinity_with_missing_block_is_claimed_again,
            claim::stale_and_conflicting_affinities_are_dropped,
            claim::long_empty_blocks_of_other_hosts_are_reclaimed,
            claim::blocks_outside_the_hosts_pools_are_released_when_empty,
            claim::claim_affinity_for_a_range,
            release::released_addresses_are_reused_last,
            release::release_reports_unallocated_and_refuses_wrong_handles,
            release::sequence_numbers_stop_a_stale_release,
            release::release_by_handle_releases_everything_once,
            release::cooldown_delays_reuse,
            release::affinity_release_and_host_helpers,
            release::deleting_a_pool_releases_its_affinities,
            release::configuration_is_validated_and_stored_in_calico_form,
            release::unconfirmed_affinities_are_invisible_to_readers,
            inspect::check_finds_leaks_and_a_report_release_fixes_them,
            inspect::tunnel_addresses_follow_the_conventions
        );
        ipam_suite!(@multi_thread $make,
            concurrency::concurrent_tasks_on_one_node,
            concurrency::concurrent_tasks_on_three_nodes,
            concurrency::concurrent_processes_on_one_and_three_nodes,
            concurrency::sigkilled_processes_leave_only_leaks_that_check_finds
        );

        /// Does nothing unless started as a child by the process cases.
        #[test]
        fn ipam_child_process() -> anyhow::Result<()> {
            suite::concurrency::child_entry()
        }
    };
    (@current_thread $make:path, $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() -> anyhow::Result<()> {
                let (_guard, target) = $make()?;
                suite::$module::$case(&target).await
            }
        )*
    };
    (@multi_thread $make:path, $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> anyhow::Result<()> {
                let (_guard, target) = $make()?;
                suite::$module::$case(&target).await
            }
        )*
    };
}
