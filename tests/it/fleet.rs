//! The fleet tests: several `vodup run` processes sharing one PostgreSQL ledger. Here so far: the
//! throwaway PostgreSQL they run on (helpers/postgres.rs), which must start, hand out databases
//! that do not see each other, and come back after a restart, as a fleet test restarting the
//! ledger's server mid-run relies on.

use crate::helpers::postgres::{self, Cluster};
use tokio_postgres::{Client, Error, NoTls};

/// A client of the database at `url`, its connection driven in the background.
async fn connect(url: &str) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn postgres_cluster_starts_creates_databases_and_restarts() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let first = cluster.create_database();
    let second = cluster.create_database();
    assert_ne!(first, second);

    let client = connect(&first)
        .await
        .expect("connects to the first database");
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("PostgreSQL "), "{version}");
    client.batch_execute("CREATE TABLE mark ()").await.unwrap();
    let other = connect(&second).await.expect("connects to the second one");
    let unseen: bool = other
        .query_one("SELECT to_regclass('mark') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(unseen, "a table of the first database shows in the second");

    cluster.stop();
    assert!(
        connect(&first).await.is_err(),
        "connected to a stopped server"
    );
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "a connection outlived its server"
    );

    cluster.start_again();
    let client = connect(&first).await.expect("connects after the restart");
    let kept: bool = client
        .query_one("SELECT to_regclass('mark') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(kept, "the restart lost the first database's table");
}

/// On CI's server (`VODUP_TEST_POSTGRES`) when there is one, so that CI checks it is usable.
#[tokio::test]
async fn postgres_shared_server_creates_databases() {
    let Some(server) = postgres::shared() else {
        return;
    };
    let url = server.create_database();
    let client = connect(&url).await.expect("connects to the new database");
    let name: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(url.ends_with(&format!("/{name}")), "{url} is not {name}");
}
