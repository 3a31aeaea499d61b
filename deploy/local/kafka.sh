#!/usr/bin/env bash
# Apache Kafka (KRaft, single node: broker + controller) on 127.0.0.1:$KAFKA_PORT, no Docker;
# or, with KAFKA_BROKERS=3 (`make up KAFKA_BROKERS=3`), a cluster of 3 such nodes on loopback
# (node N on $KAFKA_PORT + 100*(N-1), its controller on $KAFKA_CONTROLLER_PORT + 100*(N-1); a
# three-voter KRaft quorum; docs/scaling.md). Same security either way.
# The broker's jars come from Maven Central through deploy/local/kafka/pom.xml (pinned version)
# and are cached under .local/kafka/libs-<version>; a second start reuses them.
# Secured by default (docs/kafka.md): clients speak SASL_SSL (SCRAM-SHA-512) on $KAFKA_PORT; the
# controller listens on 127.0.0.1:$KAFKA_CONTROLLER_PORT with mutual TLS; StandardAuthorizer
# denies whatever deploy/local/kafka/acls.txt does not allow. A local CA, the broker's
# certificate and one random password per principal live in .local/secrets/kafka (mode 600/700).
# Usage: kafka.sh start|stop|status|acls|bootstrap|kill N
#   acls: re-apply acls.txt and the SCRAM passwords (e.g. after a password rotation);
#   bootstrap: print the client bootstrap list; kill N: SIGKILL node N (fault drills; `start`
#   brings back whichever node is not running).
# A second, separate cluster (tests, benchmarks) sets LEDGER_KAFKA_HOME (data, logs, config),
# LEDGER_KAFKA_SECRETS_DIR, LEDGER_KAFKA_RUN_DIR (pid files) and its own ports; the jars
# are always the shared cache under .local/kafka.
source "$(dirname "$0")/common.sh"

POM="$ROOT/deploy/local/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
JAR_HOME="$LOCAL/kafka"
LIBS="$JAR_HOME/libs-$KAFKA_VERSION"
K_HOME="${LEDGER_KAFKA_HOME:-$LOCAL/kafka}"
PID_DIR="${LEDGER_KAFKA_RUN_DIR:-$RUN_DIR}"
HEAP="${LEDGER_KAFKA_HEAP:-512m}"
KSEC="${LEDGER_KAFKA_SECRETS_DIR:-$SECRETS/kafka}"
BROKERS="$KAFKA_BROKERS"
case "$BROKERS" in
  1|3|4|5|6|7|8|9) ;;
  2) die "KAFKA_BROKERS=2: a two-voter KRaft quorum survives no failure; use 1 or 3" ;;
  *) die "KAFKA_BROKERS must be 1 or 3 to 9, not '$BROKERS'" ;;
esac
USERS_DIR="$KSEC/users"
CA_CRT="$KSEC/ca.crt"
BROKER_PEM="$KSEC/broker-keystore.pem"
#: The broker's own principal: SCRAM on the inter-broker listener, CN of its certificate on
#: the controller listener. The only super user; no ledger process holds its password.
BROKER_USER=kafka-broker
ACLS="$ROOT/deploy/local/kafka/acls.txt"
ACCESS_TOOL="$ROOT/deploy/local/kafka/KafkaAccess.java"

# node N: its ports, directories and pid file. One broker keeps today's layout exactly
# (.local/kafka/data, .local/run/kafka.pid); a cluster's nodes live in $K_HOME/cluster/node-N.
node() {
  NODE="$1"
  NODE_PORT=$((KAFKA_PORT + 100 * (NODE - 1)))
  NODE_CPORT=$((KAFKA_CONTROLLER_PORT + 100 * (NODE - 1)))
  if [ "$BROKERS" = 1 ]; then
    NODE_HOME="$K_HOME"; PIDFILE="$PID_DIR/kafka.pid"
  else
    NODE_HOME="$K_HOME/cluster/node-$NODE"; PIDFILE="$PID_DIR/kafka-node-$NODE.pid"
  fi
  DATA="$NODE_HOME/data"
  CONF="$NODE_HOME/server.properties"
  LOG4J="$NODE_HOME/log4j2.properties"
  K_LOG="$NODE_HOME/logs/server.log"
  SECURED_MARK="$DATA/.phi-ledger-secured"
}

# The client bootstrap list: every node's SASL_SSL listener.
bootstrap() {
  local i out=""
  for i in $(seq 1 "$BROKERS"); do out="$out${out:+,}127.0.0.1:$((KAFKA_PORT + 100 * (i - 1)))"; done
  echo "$out"
}

# The KRaft voters of a cluster: id@host:controller-port, every node.
voters() {
  local i out=""
  for i in $(seq 1 "$BROKERS"); do out="$out${out:+,}$i@127.0.0.1:$((KAFKA_CONTROLLER_PORT + 100 * (i - 1)))"; done
  echo "$out"
}

ensure_tools() {
  command -v java >/dev/null && java -version 2>&1 | grep -qE 'version "(1[7-9]|2[0-9])' \
    || apt_install openjdk-17-jre-headless
  # KafkaAccess.java runs with Java's source launcher, which needs the JDK's compiler module.
  java --list-modules 2>/dev/null | grep '^jdk.compiler' >/dev/null || apt_install openjdk-17-jdk-headless
  command -v openssl >/dev/null || apt_install openssl
  command -v mvn >/dev/null || apt_install maven
}

ensure_jars() {
  if [ -s "$LIBS/.complete" ]; then return 0; fi
  log "fetching Kafka $KAFKA_VERSION and its dependencies with Maven (log: $JAR_HOME/maven.log)"
  mkdir -p "$JAR_HOME"; rm -rf "$LIBS.tmp"
  mvn -B -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIBS.tmp" >"$JAR_HOME/maven.log" 2>&1 \
    || { tail -20 "$JAR_HOME/maven.log" >&2; die "Maven could not fetch Kafka (log: $JAR_HOME/maven.log)"; }
  ls "$LIBS.tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null || die "kafka_2.13 jar missing after fetch"
  date -u +%FT%TZ > "$LIBS.tmp/.complete"
  rm -rf "$LIBS"; mv "$LIBS.tmp" "$LIBS"
}

# Principals: the broker, and every principal acls.txt names.
principals() { echo "$BROKER_USER"; awk '!/^#/ && NF == 5 { print $1 }' "$ACLS" | sort -u; }

# issue NAME CN EXT: a key and a certificate signed by the local CA (mode 600).
issue() {
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" >/dev/null 2>&1 \
    && printf '%b' "$3" >"$1.ext" \
    && openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 \
         -extfile "$1.ext" -out "$1.crt" >/dev/null 2>&1 \
    && rm -f "$1.csr" "$1.ext" || die "openssl could not issue the $2 certificate"
}

# A local CA, the broker's certificate (server and client: it presents it to its own mTLS
# controller listener) and one random password per principal, once; renewed within 30 days
# of expiry. All files mode 600 in mode-700 directories.
ensure_secrets() {
  mkdir -p "$KSEC" "$USERS_DIR"; chmod 700 "$KSEC" "$USERS_DIR"
  (umask 077; cd "$KSEC"
   if [ ! -s ca.key ] || [ ! -s ca.crt ] || ! openssl x509 -checkend 2592000 -noout -in ca.crt >/dev/null; then
     log "issuing a local certificate authority for Kafka ($CA_CRT)"
     openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -keyout ca.key -out ca.crt \
       -subj "/CN=phi-ledger local Kafka CA" >/dev/null 2>&1 || die "openssl could not make the Kafka CA"
     rm -f "$BROKER_PEM"
   fi
   if [ ! -s "$BROKER_PEM" ] || ! openssl verify -CAfile ca.crt broker.crt >/dev/null 2>&1 \
      || ! openssl x509 -checkend 2592000 -noout -in broker.crt >/dev/null; then
     log "issuing the broker's certificate (CN=$BROKER_USER, 127.0.0.1 and localhost)"
     issue broker "$BROKER_USER" 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n'
     # Kafka's PEM keystore: the PKCS#8 key, then the certificate chain.
     cat broker.key broker.crt ca.crt >broker-keystore.pem
   fi
   find . -maxdepth 1 -type f -exec chmod 600 {} +)
  local p
  for p in $(principals); do
    if [ ! -s "$USERS_DIR/$p" ]; then
      (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$USERS_DIR/$p")
    fi
  done
}

# The quorum and replication lines: one node as ever; a cluster has a static three-plus
# voter quorum, and its internal topics (and any topic created without explicit settings)
# keep 3 copies, 2 of them in sync for a write to count.
quorum_config() {
  if [ "$BROKERS" = 1 ]; then
    cat <<CONF
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
CONF
  else
    cat <<CONF
node.id=$NODE
controller.quorum.voters=$(voters)
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
default.replication.factor=3
min.insync.replicas=2
# A replica that was out of sync never becomes leader: an acknowledged write is never lost.
unclean.leader.election.enable=false
CONF
  fi
}

write_config() {
  mkdir -p "$NODE_HOME/logs" "$DATA"
  local broker_password
  broker_password="$(cat "$USERS_DIR/$BROKER_USER")"
  (umask 077; cat >"$CONF" <<CONF
# Generated by deploy/local/kafka.sh; edits are overwritten on the next start.
# Holds the broker's SCRAM password: mode 600.
process.roles=broker,controller
$(quorum_config)
listeners=SASL_SSL://127.0.0.1:$NODE_PORT,CONTROLLER://127.0.0.1:$NODE_CPORT
advertised.listeners=SASL_SSL://127.0.0.1:$NODE_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
# Clients and the broker itself authenticate with SCRAM-SHA-512 over TLS.
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$BROKER_USER" password="$broker_password";
ssl.keystore.type=PEM
ssl.keystore.location=$BROKER_PEM
ssl.truststore.type=PEM
ssl.truststore.location=$CA_CRT
# The controller listener (loopback) takes only the broker, by its certificate (mutual TLS).
listener.name.controller.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$BROKER_USER;User:CN=$BROKER_USER
log.dirs=$DATA
offsets.topic.num.partitions=8
# Topics are created explicitly by 'ledger topics' with their partition counts.
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# An audit record must survive: keep the log (retention is the ledger's job, not Kafka's).
log.retention.hours=-1
log.retention.bytes=-1
num.partitions=4
CONF
  )
  cat >"$LOG4J" <<CONF
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $K_LOG
appender.file.filePattern = $K_LOG.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
CONF
}

# LEDGER_KAFKA_JVM_OPTS: more JVM options, after ours (a later option wins).
java_args() {
  JAVA_ARGS=("-Xmx$HEAP" "-Xms$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
             "-Dlog4j2.configurationFile=$LOG4J")
  # shellcheck disable=SC2206 # options are words
  [ -z "${LEDGER_KAFKA_JVM_OPTS:-}" ] || JAVA_ARGS+=(${LEDGER_KAFKA_JVM_OPTS})
  JAVA_ARGS+=(-cp "$LIBS/*")
}
java_cmd() { java_args; java "${JAVA_ARGS[@]}" "$@"; }

# The cluster id: a new one for one node; for a cluster, the one its first formatted node
# recorded (a node re-formatted alone would otherwise found a cluster of its own).
cluster_id() {
  local f="$K_HOME/cluster/cluster.id"
  if [ "$BROKERS" = 1 ]; then java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1; return; fi
  mkdir -p "$K_HOME/cluster"
  [ -s "$f" ] || java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$f"
  cat "$f"
}

format_storage() {
  if [ -s "$DATA/meta.properties" ] && [ ! -e "$SECURED_MARK" ]; then
    die "$DATA was formatted before Kafka was secured (it has no SCRAM user for the broker). \
Stop the stack and delete that directory; the ledger in PostgreSQL keeps every appended event."
  fi
  if [ ! -s "$DATA/meta.properties" ]; then
    local cluster_id
    cluster_id="$(cluster_id)"
    log "formatting KRaft storage of node $NODE (cluster $cluster_id)"
    # KIP-900: the broker's own SCRAM user must exist before its first start (inter-broker
    # links); every other user is added through the Admin API (KafkaAccess.java), so their
    # passwords never appear in an argument. This process is short-lived.
    # One node formats a dynamic quorum of itself (--standalone); a cluster's nodes share
    # one cluster id and the static voter list of their properties.
    local standalone=(--standalone)
    [ "$BROKERS" = 1 ] || standalone=()
    java_cmd kafka.tools.StorageTool format "${standalone[@]}" -t "$cluster_id" -c "$CONF" \
      --add-scram "SCRAM-SHA-512=[name=$BROKER_USER,password=$(cat "$USERS_DIR/$BROKER_USER")]" \
      >"$NODE_HOME/logs/format.log" 2>&1 || { cat "$NODE_HOME/logs/format.log" >&2; die "storage format failed"; }
    touch "$SECURED_MARK"
  fi
}

# The ledger's own settings for the admin principal (`ledger wait kafka`, `ledger topics`).
client_env() {
  env KAFKA_BOOTSTRAP="${CLIENT_BOOTSTRAP:-$(bootstrap)}" KAFKA_SECURITY_PROTOCOL=SASL_SSL \
    KAFKA_SSL_CA_FILE="$CA_CRT" KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \
    LEDGER_KAFKA_CREDENTIALS_DIR="$USERS_DIR" "$@"
}

# Make the broker's SCRAM users and ACLs those of acls.txt (one JVM; waits for the broker).
apply_access() {
  local quiet="$K_HOME/tool-log4j2.properties"
  mkdir -p "$K_HOME/logs"
  printf 'status = error\nrootLogger.level = error\n' >"$quiet"
  java -Xmx256m "-Dlog4j2.configurationFile=$quiet" -cp "$LIBS/*" "$ACCESS_TOOL" \
    "$(bootstrap)" "$CA_CRT" "$BROKER_USER" "$USERS_DIR/$BROKER_USER" "$ACLS" "$USERS_DIR" \
    >"$K_HOME/logs/access.log" 2>&1 || { tail -20 "$K_HOME/logs/access.log" >&2; die "could not apply $ACLS"; }
  log "users and ACLs applied: $(tail -n 1 "$K_HOME/logs/access.log")"
}

# node_ready PORT: that node accepts an authenticated metadata request, not only TCP.
node_ready() {
  port_open 127.0.0.1 "$1" || return 1
  if [ -x "$VENV/bin/ledger" ]; then
    CLIENT_BOOTSTRAP="127.0.0.1:$1" client_env "$VENV/bin/ledger" wait kafka --timeout 5 >/dev/null 2>&1
  fi
}

# start_node N: start node N unless it runs (configured and formatted first).
start_node() {
  node "$1"
  if pid_alive "$PIDFILE"; then
    log "Kafka node $NODE already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$NODE_PORT"
    return 0
  fi
  port_open 127.0.0.1 "$NODE_PORT" && die "port $NODE_PORT is taken by another process"
  write_config
  format_storage
  log "starting Kafka $KAFKA_VERSION node $NODE on 127.0.0.1:$NODE_PORT (log: $K_LOG)"
  java_args
  setsid nohup java "${JAVA_ARGS[@]}" kafka.Kafka "$CONF" >"$NODE_HOME/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
}

start() {
  mkdir -p "$PID_DIR"
  ensure_tools
  ensure_jars
  ensure_secrets
  local i
  # Every node first: a cluster's brokers register only once a quorum of controllers runs.
  for i in $(seq 1 "$BROKERS"); do start_node "$i"; done
  for i in $(seq 1 "$BROKERS"); do
    node "$i"
    wait_for 120 "Kafka's port $NODE_PORT" port_open 127.0.0.1 "$NODE_PORT" \
      || { tail -20 "$K_LOG" >&2 || true; die "Kafka node $NODE did not open its port (log: $K_LOG)"; }
  done
  apply_access
  for i in $(seq 1 "$BROKERS"); do
    node "$i"
    wait_for 120 "Kafka node $NODE" node_ready "$NODE_PORT" \
      || { tail -20 "$K_LOG" >&2 || true; die "Kafka node $NODE did not become ready (log: $K_LOG)"; }
  done
  log "Kafka logs: $K_LOG"
}

# Every node of either layout that has a pid file here.
pidfiles() { ls "$PID_DIR"/kafka.pid "$PID_DIR"/kafka-node-*.pid 2>/dev/null || true; }

acls() {
  [ -n "$(pidfiles)" ] || die "Kafka is not running"
  ensure_secrets
  apply_access
}

# All nodes at once: a cluster's last node would otherwise wait for a quorum that is gone.
stop() {
  local f
  for f in $(pidfiles); do stop_pidfile "$f" "Kafka ($(basename "$f" .pid))" & done
  wait
}

# kill N: SIGKILL node N, as a crashed host (fault drills and benchmarks).
kill_node() {
  node "$1"
  pid_alive "$PIDFILE" || die "Kafka node $NODE is not running"
  kill -9 "$(cat "$PIDFILE")"
  log "Kafka node $NODE killed (SIGKILL)"
}

status() {
  local f up=0
  for f in $(pidfiles); do
    if pid_alive "$f"; then echo "Kafka running: $(basename "$f" .pid) (pid $(cat "$f"))"; up=1; fi
  done
  [ "$up" = 1 ] || { echo "Kafka not running"; return 3; }
}

case "${1:-start}" in
  start) start ;; stop) stop ;; status) status ;; acls) acls ;; bootstrap) bootstrap ;;
  kill) kill_node "${2:?usage: $0 kill N}" ;;
  *) die "usage: $0 start|stop|status|acls|bootstrap|kill N" ;;
esac
