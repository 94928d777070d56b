//! Opening the datastore for one invocation and refusing to work on a
//! locked one (cni.md §4.1 step 3).
//!
//! Hard cases: the plugin must never create a datastore — an embedded file
//! that does not exist is reported (code 11) instead of opened, which
//! would create an empty one; `ClusterInformation.spec.datastoreReady ==
//! false` (a datastore locked for maintenance or migration) refuses ADD and
//! DEL with "try again later"; a datastore no tortie component initialised
//! (no ClusterInformation) is not locked.

use tortie_client::Client;
use tortie_datastore::DatastoreSpec;

use crate::error::CniError;

/// Opens the datastore `spec` names.
pub async fn connect(spec: &DatastoreSpec) -> Result<Client, CniError> {
    if let DatastoreSpec::Embedded { path } = spec
        && !path.exists()
    {
        return Err(CniError::try_again(format!(
            "the datastore {spec} does not exist; create it (e.g. `tortie apply` of an IPPool) \
             or point the network configuration's \"datastore\" at the right file; try again later"
        )));
    }
    let ds = tortie_datastore::connect(spec)
        .await
        .map_err(|e| CniError::from(e).context(format!("cannot open the datastore {spec}")))?;
    Ok(Client::new(ds))
}

/// Fails with code 11 if the datastore is locked.
pub async fn require_ready(client: &Client) -> Result<(), CniError> {
    let info = client
        .cluster_information()
        .await
        .map_err(|e| CniError::from(e).context("cannot read ClusterInformation"))?;
    if info.and_then(|i| i.datastore_ready) == Some(false) {
        return Err(CniError::try_again(
            "Calico is currently not ready to process requests: the datastore is locked \
             (ClusterInformation datastoreReady is false); try again later",
        ));
    }
    Ok(())
}

/// [`connect`] then [`require_ready`].
pub async fn open_ready(spec: &DatastoreSpec) -> Result<Client, CniError> {
    let client = connect(spec).await?;
    require_ready(&client).await?;
    Ok(client)
}
