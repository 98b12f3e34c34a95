//! The part of librdkafka's statistics JSON the health tracker reads: broker state, requests
//! waiting for a response, and time since the last byte received.

use std::collections::HashMap;

use serde::Deserialize;

use crate::health::BrokerStat;

#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: HashMap<String, Broker>,
}

#[derive(Deserialize)]
struct Broker {
    nodeid: i32,
    state: String,
    #[serde(default)]
    waitresp_cnt: i64,
    #[serde(default)]
    outbuf_cnt: i64,
    #[serde(default = "minus_one")]
    rxidle: i64,
    #[serde(default = "minus_one")]
    stateage: i64,
}

fn minus_one() -> i64 {
    -1
}

/// Broker figures from one statistics document (bootstrap pseudo-brokers, id -1, left out).
pub(crate) fn parse(json: &[u8]) -> Result<Vec<BrokerStat>, serde_json::Error> {
    let stats: Stats = serde_json::from_slice(json)?;
    Ok(stats
        .brokers
        .into_values()
        .filter(|b| b.nodeid >= 0)
        .map(|b| BrokerStat {
            id: b.nodeid,
            state: b.state,
            waitresp_cnt: b.waitresp_cnt,
            outbuf_cnt: b.outbuf_cnt,
            rxidle_us: b.rxidle,
            stateage_us: b.stateage,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_figures_are_read_and_bootstrap_entries_skipped() {
        let json = br#"{"name":"p","brokers":{
            "127.0.0.1:1/1":{"name":"127.0.0.1:1/1","nodeid":1,"state":"UP","waitresp_cnt":2,"rxidle":1500000,"stateage":250000,"extra":1},
            "127.0.0.1:1/bootstrap":{"nodeid":-1,"state":"INIT"}}}"#;
        let brokers = parse(json).unwrap();
        assert_eq!(
            brokers,
            vec![BrokerStat {
                id: 1,
                state: "UP".into(),
                waitresp_cnt: 2,
                outbuf_cnt: 0,
                rxidle_us: 1_500_000,
                stateage_us: 250_000,
            }]
        );
    }
}
