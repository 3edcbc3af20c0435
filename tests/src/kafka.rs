//! An Apache Kafka broker for tests: one KRaft node (controller and broker in one process) on
//! 127.0.0.1 ports, run with the machine's Java from the jars `scripts/peers.sh` fetched into
//! `~/.cache/hotspan/kafka-<version>/libs` (the version is tests/peers/kafka/pom.xml's), in a
//! fresh directory, stopped by its PID. Topics are made and read with a real client (rdkafka).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::{free_port, wait_for};

/// The Kafka version tests/peers/kafka/pom.xml lists.
pub fn kafka_version() -> Result<String> {
    let pom = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/kafka/pom.xml");
    let text = std::fs::read_to_string(&pom).with_context(|| format!("reading {}", pom.display()))?;
    // The element, not the mentions of it in comments: `<kafka.version>X</kafka.version>`.
    text.match_indices("<kafka.version>")
        .map(|(at, tag)| &text[at + tag.len()..])
        .find_map(|rest| {
            let (v, _) = rest.split_once("</kafka.version>")?;
            let v = v.trim();
            (!v.is_empty() && !v.contains('<')).then(|| v.to_string())
        })
        .context("no <kafka.version>X</kafka.version> in the pom")
}

/// The broker's jars, or an error that says how to fetch them.
fn libs() -> Result<PathBuf> {
    let version = kafka_version()?;
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let libs = cache.join(format!("hotspan/kafka-{version}/libs"));
    if !libs.join(format!("kafka_2.13-{version}.jar")).is_file() {
        bail!(
            "Kafka {version} is not fetched ({} is missing): run scripts/peers.sh (scripts/test.sh runs it)",
            libs.display()
        );
    }
    Ok(libs)
}

/// A SASL user the broker knows, for PLAIN and SCRAM-SHA-256/512 alike.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: String,
}

#[derive(Clone, Debug, Default)]
pub struct KafkaOptions {
    /// Opens SASL listeners: SASL_PLAINTEXT on `sasl_port`, and SASL_SSL on `sasl_ssl_port`
    /// when `tls` is given.
    pub users: Vec<User>,
    /// PEM certificate (chain) and PKCS#8 key the broker's TLS listener serves.
    pub tls: Option<(String, String)>,
}

/// One message read back from a topic.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A running broker. Killed on drop.
pub struct Kafka {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    /// PLAINTEXT, also between the broker and itself.
    pub port: u16,
    pub sasl_port: u16,
    pub sasl_ssl_port: u16,
    libs: PathBuf,
}

impl Kafka {
    pub fn start(options: KafkaOptions) -> Result<Kafka> {
        let libs = libs()?;
        let dir = tempfile::tempdir()?;
        let (port, controller, sasl_port, sasl_ssl_port) =
            (free_port(), free_port(), free_port(), free_port());
        let data = dir.path().join("data");
        let mut listeners = vec![
            format!("PLAINTEXT://127.0.0.1:{port}"),
            format!("CONTROLLER://127.0.0.1:{controller}"),
        ];
        let mut advertised = vec![format!("PLAINTEXT://127.0.0.1:{port}")];
        let mut extra = String::new();
        if !options.users.is_empty() {
            listeners.push(format!("SASL_PLAINTEXT://127.0.0.1:{sasl_port}"));
            advertised.push(format!("SASL_PLAINTEXT://127.0.0.1:{sasl_port}"));
            if options.tls.is_some() {
                listeners.push(format!("SASL_SSL://127.0.0.1:{sasl_ssl_port}"));
                advertised.push(format!("SASL_SSL://127.0.0.1:{sasl_ssl_port}"));
            }
            extra.push_str("sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n");
            let plain_users: String = options
                .users
                .iter()
                .map(|u| format!(" user_{}=\"{}\"", u.name, u.password))
                .collect();
            for listener in ["sasl_plaintext", "sasl_ssl"] {
                extra.push_str(&format!(
                    "listener.name.{listener}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};\n"
                ));
                for scram in ["scram-sha-256", "scram-sha-512"] {
                    extra.push_str(&format!(
                        "listener.name.{listener}.{scram}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
                    ));
                }
            }
        }
        if let Some((cert, key)) = &options.tls {
            // Kafka reads a PEM key store: the key, then the certificate chain, in one file.
            let store = dir.path().join("broker.pem");
            std::fs::write(&store, format!("{key}\n{cert}\n"))?;
            extra.push_str(&format!(
                "ssl.keystore.type=PEM\nssl.keystore.location={}\n",
                store.display()
            ));
        }
        let properties = format!(
            "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners={listeners}
advertised.listeners={advertised}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs={data}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
{extra}",
            listeners = listeners.join(","),
            advertised = advertised.join(","),
            data = data.display(),
        );
        std::fs::write(dir.path().join("server.properties"), properties)?;
        std::fs::write(
            dir.path().join("log4j2.properties"),
            "appender.out.type = Console\nappender.out.name = out\nappender.out.layout.type = PatternLayout\n\
             appender.out.layout.pattern = [%d] %p %m (%c)%n\nrootLogger.level = warn\nrootLogger.appenderRef.out.ref = out\n",
        )?;
        let mut format = vec![
            "format".to_string(),
            "-t".into(),
            // A cluster id: 16 bytes, base64url (any fixed one will do for a fresh directory).
            "MkU3OEVBNTcwNTJENDM2Qg".into(),
            "-c".into(),
            dir.path().join("server.properties").display().to_string(),
        ];
        for u in &options.users {
            for scram in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                format.push("--add-scram".into());
                format.push(format!("{scram}=[name={},password={}]", u.name, u.password));
            }
        }
        let out = java(&libs, dir.path())?
            .arg("kafka.tools.StorageTool")
            .args(&format)
            .output()
            .context("formatting the Kafka log directory")?;
        if !out.status.success() {
            bail!(
                "kafka-storage format failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut kafka = Kafka {
            child: None,
            dir,
            port,
            sasl_port,
            sasl_ssl_port,
            libs,
        };
        kafka.launch()?;
        Ok(kafka)
    }

    /// `host:port` of the plaintext listener.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    fn launch(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))?;
        let child = java(&self.libs, self.dir.path())?
            .args(["-Xms128m", "-Xmx768m", "kafka.Kafka"])
            .arg(self.dir.path().join("server.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the Kafka broker")?;
        self.child = Some(child);
        // Ready when a client gets the cluster's metadata with this broker in it.
        let client = self.admin_config().create::<BaseConsumer>()?;
        let ready = wait_for(Duration::from_secs(90), "the Kafka broker to answer", || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Some(Err(anyhow::anyhow!("the broker exited with {status}")));
            }
            let md = client.fetch_metadata(None, Duration::from_secs(1)).ok()?;
            (!md.brokers().is_empty()).then_some(Ok(()))
        });
        match ready.and_then(|r| r) {
            Ok(()) => Ok(()),
            Err(e) => bail!("{e}\n--- broker log ---\n{}", self.log()),
        }
    }

    /// SIGKILL, as a crash would stop it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("kill -9 the broker")?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the broker again on the same directory and ports.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.launch()
    }

    fn admin_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("group.id", "hotspan-tests-reader")
            .set("enable.auto.commit", "false");
        c
    }

    /// Creates `topics` (name, partitions), waiting until the broker has them.
    pub fn create_topics(&self, topics: &[(&str, i32)]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.admin_config().create()?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let results = rt.block_on(admin.create_topics(&new, &AdminOptions::new()))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, e)) => bail!("creating topic {topic}: {e}"),
            }
        }
        let client = self.admin_config().create::<BaseConsumer>()?;
        wait_for(Duration::from_secs(30), "the topics' leaders", || {
            let md = client.fetch_metadata(None, Duration::from_secs(1)).ok()?;
            topics
                .iter()
                .all(|(name, partitions)| {
                    md.topics().iter().any(|t| {
                        t.name() == *name
                            && t.partitions().len() == *partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .then_some(())
        })
    }

    /// Every message of `topic` now, read from the start.
    pub fn read_all(&self, topic: &str) -> Result<Vec<Record>> {
        let consumer = self.admin_config().create::<BaseConsumer>()?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut ends = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let (_, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(5))?;
            ends.push((*p, high));
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut out = Vec::new();
        let mut next: std::collections::BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
        wait_for(
            Duration::from_secs(30),
            &format!("every message of {topic}"),
            || {
                while let Some(m) = consumer.poll(Duration::from_millis(100)) {
                    let Ok(m) = m else { continue };
                    next.insert(m.partition(), m.offset() + 1);
                    out.push(Record {
                        partition: m.partition(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                }
                ends.iter()
                    .all(|(p, high)| next.get(p).copied().unwrap_or(0) >= *high)
                    .then_some(())
            },
        )?;
        Ok(out)
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// `java -cp <libs>/*` with the broker's logging set up, run in `dir`.
fn java(libs: &Path, dir: &Path) -> Result<Command> {
    let which = Command::new("java").arg("-version").output();
    if !which.map(|o| o.status.success()).unwrap_or(false) {
        bail!(
            "java is not installed: Kafka needs Java 17+ (scripts/test.sh installs openjdk-17-jre-headless)"
        );
    }
    let mut c = Command::new("java");
    c.current_dir(dir)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()));
    Ok(c)
}
