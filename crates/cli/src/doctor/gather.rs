//! Learning the cluster through librdkafka: metadata (brokers, topics, partitions, replicas,
//! ISR) and DescribeConfigs (topic and broker configuration).
//!
//! librdkafka's metadata comes from whichever broker answers first, so it is the cluster's
//! view, not ours: it still lists a broker we cannot reach (`probe` checks that). We ask for all
//! topics and filter, rather than naming topics, so that the doctor never triggers topic
//! auto-creation.
//!
//! DescribeConfigs for a topic returns its effective values (the topic's own override, else the
//! broker's, else Kafka's default) with their source. Broker resources are asked one broker per
//! request, as librdkafka requires. A broker that does not offer DescribeConfigs (librdkafka's
//! mock cluster does not) or refuses it (ACLs) makes that lookup [`Lookup::Unknown`].

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResource, ConfigSource, OwnedResourceSpecifier,
    ResourceSpecifier,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::Metadata;

use super::facts::{Broker, DurabilityConfig, Lookup, Partition, Setting, Topic};

pub type Admin = AdminClient<DefaultClientContext>;

/// An admin client for `bootstrap` with the operator's connection properties.
pub fn admin_client(
    bootstrap: &str,
    connection_properties: &[(String, String)],
) -> anyhow::Result<Admin> {
    let mut config = ClientConfig::new();
    for (k, v) in connection_properties {
        config.set(k, v);
    }
    config.set("bootstrap.servers", bootstrap);
    Ok(config.create()?)
}

/// The cluster's metadata: listed brokers and the topics to judge.
#[derive(Debug)]
pub struct ClusterMetadata {
    pub brokers: Vec<Broker>,
    pub topics: Vec<Topic>,
    pub missing_topics: Vec<String>,
}

/// Fetches metadata for all topics; keeps `wanted` (or every topic not starting with `__` when
/// `wanted` is empty). An error here means no broker answered: the doctor cannot run.
pub fn metadata(
    admin: &Admin,
    wanted: &[String],
    timeout: Duration,
) -> Result<ClusterMetadata, rdkafka::error::KafkaError> {
    let md = admin.inner().fetch_metadata(None, timeout)?;
    Ok(from_metadata(&md, wanted))
}

fn from_metadata(md: &Metadata, wanted: &[String]) -> ClusterMetadata {
    let mut brokers: Vec<Broker> = md
        .brokers()
        .iter()
        .map(|b| Broker {
            id: b.id(),
            host: b.host().to_string(),
            port: u16::try_from(b.port()).unwrap_or(0),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let keep = |name: &str| {
        if wanted.is_empty() {
            !name.starts_with("__")
        } else {
            wanted.iter().any(|w| w == name)
        }
    };
    let mut topics: Vec<Topic> = md
        .topics()
        .iter()
        .filter(|t| keep(t.name()))
        .map(|t| {
            let mut partitions: Vec<Partition> = t
                .partitions()
                .iter()
                .map(|p| Partition {
                    id: p.id(),
                    leader: (p.leader() >= 0).then_some(p.leader()),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                    error: p.error().map(|e| format!("{e:?}")),
                })
                .collect();
            partitions.sort_by_key(|p| p.id);
            Topic {
                name: t.name().to_string(),
                error: t.error().map(|e| format!("{e:?}")),
                partitions,
            }
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let missing_topics = wanted
        .iter()
        .filter(|w| !topics.iter().any(|t| &t.name == *w))
        .cloned()
        .collect();
    ClusterMetadata {
        brokers,
        topics,
        missing_topics,
    }
}

fn options(timeout: Duration) -> AdminOptions {
    AdminOptions::new().request_timeout(Some(timeout))
}

/// The durability settings of each topic, one DescribeConfigs request for all of them.
pub async fn topic_configs(
    admin: &Admin,
    topics: &[String],
    timeout: Duration,
) -> BTreeMap<String, Lookup<DurabilityConfig>> {
    if topics.is_empty() {
        return BTreeMap::new();
    }
    let specs: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(t.as_str()))
        .collect();
    let unknown_all = |why: String| {
        topics
            .iter()
            .map(|t| (t.clone(), Lookup::Unknown(why.clone())))
            .collect()
    };
    let results = match admin.describe_configs(&specs, &options(timeout)).await {
        Ok(r) => r,
        Err(e) => return unknown_all(format!("DescribeConfigs failed: {e}")),
    };
    let mut out = BTreeMap::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(resource) => {
                if let OwnedResourceSpecifier::Topic(name) = &resource.specifier {
                    out.insert(name.clone(), Lookup::Known(durability_config(&resource)));
                }
            }
            // librdkafka returns resources in request order; an error carries no name.
            Err(code) => {
                if let Some(t) = topics.get(i) {
                    out.insert(
                        t.clone(),
                        Lookup::Unknown(format!("DescribeConfigs refused: {code:?}")),
                    );
                }
            }
        }
    }
    for t in topics {
        out.entry(t.clone())
            .or_insert_with(|| Lookup::Unknown("DescribeConfigs returned nothing for it".into()));
    }
    out
}

/// The durability defaults of each broker: one DescribeConfigs request per broker (librdkafka
/// allows one broker resource per request), all in flight at once so that unreachable brokers
/// cost one timeout in total, not one each.
pub async fn broker_configs(
    admin: &Admin,
    brokers: &[i32],
    timeout: Duration,
) -> BTreeMap<i32, Lookup<DurabilityConfig>> {
    let opts = options(timeout);
    let specs: Vec<[ResourceSpecifier<'_>; 1]> = brokers
        .iter()
        .map(|&id| [ResourceSpecifier::Broker(id)])
        .collect();
    let answers =
        futures::future::join_all(specs.iter().map(|spec| admin.describe_configs(spec, &opts)))
            .await;
    brokers
        .iter()
        .zip(answers)
        .map(|(&id, answer)| {
            let lookup = match answer {
                Ok(mut r) => match r.pop() {
                    Some(Ok(resource)) => Lookup::Known(durability_config(&resource)),
                    Some(Err(code)) => {
                        Lookup::Unknown(format!("DescribeConfigs refused: {code:?}"))
                    }
                    None => Lookup::Unknown("DescribeConfigs returned nothing".into()),
                },
                Err(e) => Lookup::Unknown(format!("DescribeConfigs failed: {e}")),
            };
            (id, lookup)
        })
        .collect()
}

fn source_name(source: &ConfigSource) -> &'static str {
    match source {
        ConfigSource::DynamicTopic => "topic",
        ConfigSource::DynamicBroker => "broker (dynamic)",
        ConfigSource::DynamicDefaultBroker => "cluster default (dynamic)",
        ConfigSource::StaticBroker => "broker (server.properties)",
        ConfigSource::Default => "Kafka default",
        ConfigSource::Unknown => "unknown source",
    }
}

fn durability_config(resource: &ConfigResource) -> DurabilityConfig {
    fn setting<T>(
        resource: &ConfigResource,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<Setting<T>> {
        let entry = resource.get(name)?;
        let value = parse(entry.value.as_deref()?.trim())?;
        Some(Setting {
            value,
            source: source_name(&entry.source).to_string(),
        })
    }
    DurabilityConfig {
        min_insync_replicas: setting(resource, "min.insync.replicas", |v| v.parse().ok()),
        unclean_leader_election: setting(resource, "unclean.leader.election.enable", |v| {
            v.parse().ok()
        }),
        default_replication_factor: setting(resource, "default.replication.factor", |v| {
            v.parse().ok()
        }),
    }
}
