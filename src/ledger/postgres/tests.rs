use super::*;
use crate::config::LedgerLocation;
use crate::ledger::BackendError;

const PASSWORD: &str = "s3cr3t-pw";

/// Port 1 of this host: nothing listens, the connection is refused at once.
fn refused_url() -> PostgresUrl {
    PostgresUrl::parse(&format!(
        "postgres://vodup:{PASSWORD}@127.0.0.1:1/vodup?connect_timeout=2"
    ))
    .unwrap()
}

#[tokio::test]
async fn no_error_or_debug_output_shows_the_password() {
    let url = refused_url();
    assert_eq!(url.password().unwrap().reveal(), PASSWORD.as_bytes());
    let ledger = Postgres::connect(&url).unwrap();
    let direct = tokio_postgres::connect(
        &format!("postgres://vodup:{PASSWORD}@127.0.0.1:1/vodup"),
        tokio_postgres::NoTls,
    )
    .await
    .map(|_| ())
    .unwrap_err();
    let errors = [
        Postgres::open(&url).await.unwrap_err(),
        ledger.files().await.unwrap_err(),
        ledger.server_version().await.unwrap_err(),
        ledger.schema().await.unwrap_err(),
        LedgerError::from(direct),
        BackendError::PostgresSchema {
            url: ledger.url.clone(),
            message: SchemaState {
                applied: 2,
                known: 1,
            }
            .to_string(),
        }
        .into(),
    ];
    for error in &errors {
        let shown = format!("{error} | {error:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    assert!(errors[0]
        .to_string()
        .contains("postgres://vodup@127.0.0.1:1/vodup"));
    let location = LedgerLocation::Postgres(url);
    let shown = format!("{location} {location:?} {ledger:?} {:?}", ledger.pool);
    assert!(!shown.contains(PASSWORD), "{shown}");
    let bad = format!("postgres://vodup:{PASSWORD}@127.0.0.1:port/vodup");
    let refused = LedgerLocation::parse(&bad).unwrap_err();
    assert!(!refused.contains(PASSWORD), "{refused}");
}
