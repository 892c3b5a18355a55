//! Offset tracking of the Kafka source against librdkafka's mock cluster: offsets are committed
//! only for epochs the end of the dataflow has passed, a clean stop commits the end offset of
//! every partition, and a restart resumes exactly there.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use operators::batch::EventBatch;
use operators::event::fields::ExtraFeatures;
use operators::event::parse::EventParser;
use operators::source::kafka::{kafka_source, CommitPolicy, KafkaSourceConfig, OffsetCommitter, PartitionConsumer};
use operators::source::kafka_client::{partitions_of_worker, KafkaSettings};
use operators::state::checkpoint::offsets::OffsetLedger;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator, Probe};
use timely::dataflow::ProbeHandle;

const TOPIC: &str = "events";
const PARTITIONS: i32 = 4;
const GROUP: &str = "vigil-test";

fn produce(brokers: &str, first: u64, count: u64) {
    let producer: ThreadedProducer<_> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("mock producer");
    for i in first..first + count {
        let user = format!("user_{}", i % 37);
        let line = format!(
            r#"{{"eventId":"e{i}","userId":"{user}","timestamp":{},"value":{}.5}}"#,
            1_700_000_000_000u64 + i * 1000,
            i % 100
        );
        producer.send(BaseRecord::<_, _>::to(TOPIC).key(&user).payload(&line)).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("mock cluster acknowledged");
}

/// The group's committed next offset per partition (-1001 when none).
fn committed(brokers: &str) -> Vec<i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", GROUP).create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(TOPIC, p);
    }
    let list = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    (0..PARTITIONS)
        .map(|p| match list.find_partition(TOPIC, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1001,
        })
        .collect()
}

fn end_offsets(brokers: &str) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("consumer");
    (0..PARTITIONS)
        .map(|p| consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(10)).expect("watermarks").1)
        .collect()
}

/// Runs the Kafka source on `workers` workers until `expected` records have been seen, then
/// stops it (as SIGTERM would) and drains. The end of the dataflow holds every epoch open
/// while `gate` is closed; `while_gated` runs on worker 0 once all records are in but the
/// gate is still closed. With `stop_at_end` the source must stop by itself at the end offsets
/// it found at start instead. Returns the records seen.
fn run(
    brokers: &str,
    workers: usize,
    expected: u64,
    gate_closed: bool,
    while_gated: fn(&str),
    stop_at_end: bool,
) -> u64 {
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(AtomicBool::new(gate_closed));
    let brokers_owned = brokers.to_owned();
    let seen_outer = Arc::clone(&seen);
    timely::execute(timely::Config::process(workers), move |worker| {
        let settings = KafkaSettings { brokers: brokers_owned.clone(), group: GROUP.to_owned(), options: Vec::new() };
        let mine = partitions_of_worker(PARTITIONS as usize, worker.index(), worker.peers());
        let consumer = Rc::new(
            PartitionConsumer::connect(&settings, TOPIC, &mine, &Default::default()).expect("consumer connects"),
        );
        let ledger = Rc::new(RefCell::new(OffsetLedger::default()));
        let probe = ProbeHandle::new();
        let cfg = KafkaSourceConfig {
            batch_len: 64,
            max_open_messages: 1 << 20,
            stop: Arc::clone(&stop),
            probe: probe.clone(),
            stop_at: stop_at_end.then(|| consumer.unread_ends().expect("end offsets")),
            barriers: Default::default(),
            first_epoch: 0,
        };
        let (seen_in, gate_in) = (Arc::clone(&seen), Arc::clone(&gate));
        worker.dataflow::<u64, _, _>(|scope| {
            let parser = EventParser::new(ExtraFeatures::default());
            kafka_source(scope, Rc::clone(&consumer), Rc::clone(&ledger), parser, cfg)
                .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Pipeline,
                    "GatedEnd",
                    move |_, info| {
                        let activator = scope.activator_for(info.address);
                        let mut held: Vec<Capability<u64>> = Vec::new();
                        move |(input, _frontier), output| {
                            input.for_each_stamp(|cap, data| {
                                let records: usize = data
                                    .flat_map(|d| d.iter())
                                    .map(|b: &EventBatch| b.events.len() + b.dead.len())
                                    .sum();
                                seen_in.fetch_add(records as u64, Ordering::SeqCst);
                                held.extend(cap.retain_least(output.output_index()));
                            });
                            if gate_in.load(Ordering::SeqCst) {
                                activator.activate_after(Duration::from_millis(1));
                            } else {
                                held.clear();
                            }
                        }
                    },
                )
                .probe_with(&probe);
        });
        let mut committer = OffsetCommitter::new(consumer, ledger, Duration::ZERO, CommitPolicy::Delivered);
        let deadline = Instant::now() + Duration::from_secs(60);
        while worker.step_or_park(Some(Duration::from_millis(5))) {
            committer.tick(&probe);
            if seen.load(Ordering::SeqCst) >= expected && gate.load(Ordering::SeqCst) && worker.index() == 0 {
                while_gated(&brokers_owned);
                gate.store(false, Ordering::SeqCst);
            }
            if seen.load(Ordering::SeqCst) >= expected && !gate.load(Ordering::SeqCst) && !stop_at_end {
                stop.store(true, Ordering::SeqCst);
            }
            assert!(Instant::now() < deadline, "the source did not deliver {expected} records in time");
        }
        committer.finish().expect("final commit");
    })
    .expect("timely runs");
    seen_outer.load(Ordering::SeqCst)
}

#[test]
fn offsets_wait_for_the_end_of_the_dataflow_and_restarts_resume_there() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    produce(&brokers, 0, 2000);

    let seen = run(
        &brokers,
        2,
        2000,
        true,
        |brokers| {
            assert!(
                committed(brokers).iter().all(|&c| c < 0),
                "offsets were committed while the end of the dataflow still held their epochs"
            );
        },
        false,
    );
    assert_eq!(seen, 2000);
    let ends = end_offsets(&brokers);
    assert_eq!(ends.iter().sum::<i64>(), 2000);
    assert_eq!(committed(&brokers), ends, "a clean stop commits every partition's end offset");

    produce(&brokers, 2000, 300);
    let seen = run(&brokers, 1, 300, false, |_| {}, false);
    assert_eq!(seen, 300, "a restart reads exactly the messages after the committed offsets");
    assert_eq!(committed(&brokers), end_offsets(&brokers));

    produce(&brokers, 2300, 500);
    let seen = run(&brokers, 2, 500, false, |_| {}, true);
    assert_eq!(seen, 500, "--stop-at-end reads the backlog present at start, then stops by itself");
    assert_eq!(committed(&brokers), end_offsets(&brokers));
}
