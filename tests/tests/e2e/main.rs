//! End-to-end tests: a real `amicus serve` process on 127.0.0.1:0 and native
//! clients, as a litigation team would use them.

mod browser;
mod canaries;
mod coedit;
mod discussions;
mod drop_boxes;
mod drop_page;
mod durability;
mod files;
mod first_day;
mod fuzz_regressions;
mod hostile;
mod incremental;
mod load;
mod membership;
mod misbehaving;
mod monitoring;
mod notifications;
mod offline;
mod pipelining;
mod public;
mod relay_double;
mod reopen;
mod revocation;
mod slow_link;
mod support;
mod tls;
mod violations_map;
mod webdriver;
