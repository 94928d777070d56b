//! The labels a selector sees on an endpoint or network set
//! (selectors.md §6.1-6.2), flattened into one map.
//!
//! Lookup order: the implicit labels tortie sets (`projectcalico.org/
//! namespace`, `projectcalico.org/orchestrator`, `projectcalico.org/
//! serviceaccount`), which override whatever the resource itself says;
//! then the resource's own labels; then each parent profile's
//! `labelsToApply` in list order, a key taken only if no earlier layer has
//! it. So endpoint labels shadow profile labels and earlier profiles shadow
//! later ones.
//!
//! Flattening costs a copy per endpoint but makes every selector
//! evaluation a single map lookup per label; the map is rebuilt only when
//! the endpoint or one of its profiles' labels changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use tortie_model::endpoint::NAMESPACE_LABEL;

/// A flattened label map, shared between the model and the indexes.
pub type Labels = Arc<BTreeMap<String, String>>;

/// What an item's labels are built from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSources {
    /// Labels tortie sets; they win over everything.
    pub implicit: Vec<(String, String)>,
    /// The resource's own `metadata.labels`.
    pub own: BTreeMap<String, String>,
    /// Profiles whose `labelsToApply` are inherited, in order.
    pub parents: Vec<String>,
}

impl LabelSources {
    /// Flattens the layers; `profile_labels` looks a profile's
    /// `labelsToApply` up (missing profiles contribute nothing).
    pub fn flatten<'a>(
        &self,
        profile_labels: impl Fn(&str) -> Option<&'a BTreeMap<String, String>>,
    ) -> Labels {
        let mut out = self.own.clone();
        for (k, v) in &self.implicit {
            out.insert(k.clone(), v.clone());
        }
        for parent in &self.parents {
            if let Some(inherited) = profile_labels(parent) {
                for (k, v) in inherited {
                    out.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        Arc::new(out)
    }
}

/// The namespace an item's labels place it in (what namespace-scoped
/// selectors test).
pub fn namespace_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(NAMESPACE_LABEL).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_shadow_in_order() {
        let profiles = BTreeMap::from([
            ("p1".to_string(), map(&[("a", "p1"), ("b", "p1")])),
            (
                "p2".to_string(),
                map(&[("b", "p2"), ("c", "p2"), ("ns", "p2")]),
            ),
        ]);
        let sources = LabelSources {
            implicit: vec![("ns".into(), "real".into())],
            own: map(&[("a", "own"), ("ns", "fake")]),
            parents: vec!["p1".into(), "missing".into(), "p2".into()],
        };
        let labels = sources.flatten(|p| profiles.get(p));
        assert_eq!(
            *labels,
            map(&[("a", "own"), ("b", "p1"), ("c", "p2"), ("ns", "real")])
        );
    }
}
