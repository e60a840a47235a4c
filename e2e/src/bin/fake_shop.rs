//! `fake-shop [ADDR] [KEY]`: runs the fake shop API (see `e2e::shop`) until interrupted.
//! Defaults: 127.0.0.1:9500 and the key `shop-key`.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9500".into());
    let key = args.next().unwrap_or_else(|| "shop-key".into());
    let shop = match e2e::shop::FakeShop::start_on(&addr, &key) {
        Ok(shop) => shop,
        Err(e) => {
            eprintln!("fake-shop: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("fake-shop: listening on {}", shop.base_url);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
