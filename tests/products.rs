//! The 1NCE client's catalogue against the sandbox over real HTTP: the documented shape parsed
//! into exact prices, one fetch shared while fresh, and a failed fetch not cached.

use std::time::Duration;

use onence_mcp::api::ApiError;
use onence_mcp::api::products::{Catalogue, Cents};
use onence_mcp::sandbox::{Fault, Sandbox};

use crate::common::api_client;

#[tokio::test]
async fn the_catalogue_is_parsed_exactly_and_shared_while_fresh() {
    let sandbox = Sandbox::start().await.unwrap();
    let client = api_client(&sandbox);
    let products = client.list_products().await.unwrap();
    assert_eq!(products.len(), 4);
    let industrial = products.iter().find(|p| p.id == 1002).unwrap();
    assert_eq!(industrial.name, "1NCE IoT FlexSIM - Industrial");
    assert_eq!(industrial.min_quantity, 1);
    assert_eq!(industrial.max_quantity, Some(1000));
    assert_eq!(industrial.one_time_charges[0].amount_net, Cents(1500));
    assert_eq!(industrial.one_time_charges[0].currency, "EUR");

    let catalogue = Catalogue::new(client, Duration::from_secs(300));
    sandbox.clear_requests();
    let (a, b) = tokio::join!(catalogue.products(), catalogue.products());
    assert_eq!(a.unwrap(), b.unwrap());
    catalogue.products().await.unwrap();
    assert_eq!(sandbox.count("GET", "/v1/products"), 1);
}

#[tokio::test]
async fn a_failed_fetch_is_reported_and_not_cached() {
    let sandbox = Sandbox::start().await.unwrap();
    let catalogue = Catalogue::new(api_client(&sandbox), Duration::from_secs(300));
    sandbox.inject(Fault::status("GET", "/v1/products", 403));
    assert_eq!(catalogue.products().await.unwrap_err(), ApiError::Forbidden);
    assert_eq!(catalogue.products().await.unwrap().len(), 4);
}
