//! A datastore wrapper with a switchable outage, for syncer cases: while
//! "down", every call fails with `Unavailable` and every open watch ends
//! with `Unavailable`, as when the connection to a server drops. It also
//! records when lists were attempted.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tortie_datastore::{
    BackendStatus, Datastore, DatastoreError, KeyValue, ListResult, Revision,
    WATCH_CHANNEL_CAPACITY, Watch,
};

pub struct Flaky {
    inner: Arc<dyn Datastore>,
    down: watch::Sender<bool>,
    list_attempts: Mutex<Vec<Instant>>,
}

impl Flaky {
    pub fn new(inner: Arc<dyn Datastore>) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner,
            down: watch::channel(false).0,
            list_attempts: Mutex::new(Vec::new()),
        })
    }

    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    pub fn list_attempts(&self) -> Vec<Instant> {
        self.list_attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn check(&self) -> Result<(), DatastoreError> {
        if *self.down.borrow() {
            Err(outage())
        } else {
            Ok(())
        }
    }
}

fn outage() -> DatastoreError {
    DatastoreError::Unavailable {
        endpoint: "flaky".to_owned(),
        reason: "injected outage".to_owned(),
    }
}

#[async_trait::async_trait]
impl Datastore for Flaky {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DatastoreError> {
        self.check()?;
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<ListResult, DatastoreError> {
        self.list_attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        self.check()?;
        self.inner.list(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError> {
        self.check()?;
        self.inner.create(key, value).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, DatastoreError> {
        self.check()?;
        self.inner.update(key, value, expected_mod_revision).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError> {
        self.check()?;
        self.inner.put(key, value).await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        self.check()?;
        self.inner.delete(key, expected_mod_revision).await
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch, DatastoreError> {
        self.check()?;
        let mut inner = self.inner.watch(prefix, start_revision).await?;
        let mut down = self.down.subscribe();
        let (sender, receiver) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
        let forwarder = tokio::spawn(async move {
            loop {
                tokio::select! {
                    item = inner.next() => {
                        let Some(item) = item else { return };
                        let end = item.is_err();
                        if sender.send(item).await.is_err() || end {
                            return;
                        }
                    }
                    _ = async { down.wait_for(|down| *down).await.map(drop) } => {
                        // The consumer may be gone already; nothing to do then.
                        let _ = sender.send(Err(outage())).await;
                        return;
                    }
                }
            }
        });
        Ok(Watch::new(receiver, forwarder.abort_handle()))
    }

    async fn revision(&self) -> Result<Revision, DatastoreError> {
        self.check()?;
        self.inner.revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<(), DatastoreError> {
        self.check()?;
        self.inner.compact(revision).await
    }

    async fn status(&self) -> Result<BackendStatus, DatastoreError> {
        self.check()?;
        self.inner.status().await
    }

    fn describe(&self) -> String {
        format!("flaky({})", self.inner.describe())
    }
}
