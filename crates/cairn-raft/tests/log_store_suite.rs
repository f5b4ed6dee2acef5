//! openraft's storage conformance suite against the redb log store and the SQLite state
//! machine.

use std::sync::Arc;

use cairn_raft::{LogStore, StateMachine, TypeConfig};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let se = |e: std::io::Error| StorageError::write(TypeConfig::err_from_error(&e));
        let dir = tempfile::tempdir().map_err(se)?;
        let log = LogStore::open(&dir.path().join("log.redb"), 0).map_err(se)?;
        let store = cairn_sql::Store::open(&dir.path().join("sm"))
            .map_err(|e| se(std::io::Error::other(e)))?;
        let sm = StateMachine::open(Arc::new(store), &dir.path().join("snapshots")).map_err(se)?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder).await
}
