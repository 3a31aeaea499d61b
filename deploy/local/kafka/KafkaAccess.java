// Makes the broker's SCRAM users and ACLs equal to deploy/local/kafka/acls.txt, in one JVM.
// Run by deploy/local/kafka.sh (Java's single-file source launcher, against the broker's jars):
//
//   java -cp 'libs/*' KafkaAccess.java BOOTSTRAP CA_FILE ADMIN_USER ADMIN_PASSWORD_FILE ACL_FILE USERS_DIR
//
// It connects as ADMIN_USER (the broker's own super user) over SASL_SSL, waits up to 120 s
// for the broker, then (1) upserts a SCRAM-SHA-512 credential for every principal the ACL
// file names, from USERS_DIR/<principal> (the password never appears in an argument), and
// (2) adds every ACL of the file that is missing and deletes every ACL the file does not
// list: the file is the whole truth. It prints one summary line; it exits non-zero on any
// failure.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAccess {
  static final int ITERATIONS = 8192;

  public static void main(String[] args) throws Exception {
    if (args.length != 6) {
      System.err.println("usage: KafkaAccess BOOTSTRAP CA_FILE ADMIN_USER ADMIN_PASSWORD_FILE ACL_FILE USERS_DIR");
      System.exit(2);
    }
    String adminPassword = Files.readString(Path.of(args[3])).strip();
    Properties props = new Properties();
    props.put("bootstrap.servers", args[0]);
    props.put("security.protocol", "SASL_SSL");
    props.put("sasl.mechanism", "SCRAM-SHA-512");
    props.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required "
        + "username=\"" + args[2] + "\" password=\"" + adminPassword + "\";");
    props.put("ssl.truststore.type", "PEM");
    props.put("ssl.truststore.location", args[1]);
    props.put("request.timeout.ms", "10000");
    props.put("default.api.timeout.ms", "20000");
    Set<AclBinding> wanted = parse(Path.of(args[4]));
    Set<String> users = new LinkedHashSet<>();
    for (AclBinding b : wanted) users.add(b.entry().principal().substring("User:".length()));

    try (Admin admin = Admin.create(props)) {
      waitForBroker(admin, 120_000);
      List<UserScramCredentialAlteration> upserts = new ArrayList<>();
      for (String user : users) {
        Path file = Path.of(args[5], user);
        String password = Files.readString(file).strip();
        if (password.isEmpty()) throw new IllegalStateException(file + " is empty");
        upserts.add(new UserScramCredentialUpsertion(
            user, new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS), password));
      }
      admin.alterUserScramCredentials(upserts).all().get(30, TimeUnit.SECONDS);

      Collection<AclBinding> existing = admin.describeAcls(AclBindingFilter.ANY).values().get(30, TimeUnit.SECONDS);
      List<AclBinding> add = new ArrayList<>();
      for (AclBinding b : wanted) if (!existing.contains(b)) add.add(b);
      List<AclBindingFilter> drop = new ArrayList<>();
      for (AclBinding b : existing) if (!wanted.contains(b)) drop.add(b.toFilter());
      if (!add.isEmpty()) admin.createAcls(add).all().get(30, TimeUnit.SECONDS);
      if (!drop.isEmpty()) admin.deleteAcls(drop).all().get(30, TimeUnit.SECONDS);
      System.out.printf("%d SCRAM users, %d ACLs (%d added, %d removed)%n",
          users.size(), wanted.size(), add.size(), drop.size());
    }
  }

  static void waitForBroker(Admin admin, long millis) throws Exception {
    long deadline = System.currentTimeMillis() + millis;
    while (true) {
      try {
        admin.describeCluster().nodes().get(10, TimeUnit.SECONDS);
        return;
      } catch (Exception e) {
        if (System.currentTimeMillis() > deadline) throw e;
        Thread.sleep(500);
      }
    }
  }

  // One ACL line: PRINCIPAL RESOURCE_TYPE PATTERN_TYPE NAME OPERATION[,OPERATION...]
  static Set<AclBinding> parse(Path file) throws Exception {
    Set<AclBinding> out = new HashSet<>();
    int n = 0;
    for (String raw : Files.readAllLines(file)) {
      n++;
      String line = raw.strip();
      if (line.isEmpty() || line.startsWith("#")) continue;
      String[] f = line.split("\\s+");
      if (f.length != 5) throw new IllegalArgumentException(file + ":" + n + ": expected 5 fields");
      ResourcePattern pattern = new ResourcePattern(
          ResourceType.valueOf(f[1]), f[3], PatternType.valueOf(f[2]));
      for (String op : f[4].split(",")) {
        out.add(new AclBinding(pattern, new AccessControlEntry(
            "User:" + f[0], "*", AclOperation.valueOf(op), AclPermissionType.ALLOW)));
      }
    }
    return out;
  }
}
