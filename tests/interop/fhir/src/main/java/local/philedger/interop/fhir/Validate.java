package local.philedger.interop.fhir;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * Offline FHIR R4 instance validation of JSON resources with HAPI FHIR.
 *
 * <p>Usage: {@code Validate [--all] [FILE...]}. Each FILE (or standard input when no FILE is
 * given) holds one JSON resource or a JSON array of resources; every resource is validated
 * against the R4 core definitions shipped in hapi-fhir-validation-resources-r4, with in-memory
 * terminology (no terminology server, no network). One JVM validates every resource given, so
 * callers should batch.
 *
 * <p>Standard output is one JSON object: {@code {"results": [{"source", "resourceType", "id",
 * "valid", "issues": [{"severity", "location", "message", "messageId"}]}]}}. {@code issues}
 * lists the messages of severity error and fatal ({@code --all}: every severity). A resource
 * is valid iff it has no error or fatal message.
 *
 * <p>Exit status: 0 when every resource is valid, 1 when any is not, 2 when the input is
 * unusable (unreadable file, not JSON, not a resource); then stdout is empty and stderr says why.
 */
public final class Validate {
  private static final String PROG = "fhir-r4-validate";

  private Validate() {}

  /** Input that is not a list of resources: the caller's fault, exit status 2. */
  private static final class UsageError extends Exception {
    private static final long serialVersionUID = 1L;

    UsageError(String message) {
      super(message);
    }
  }

  private record Input(String source, JsonNode resource) {}

  public static void main(String[] args) {
    boolean all = false;
    List<String> files = new ArrayList<>();
    for (String arg : args) {
      if (arg.equals("--all")) {
        all = true;
      } else if (arg.startsWith("--")) {
        fail("unknown option " + arg);
        return;
      } else {
        files.add(arg);
      }
    }
    ObjectMapper mapper = new ObjectMapper();
    List<Input> inputs;
    try {
      inputs = readInputs(mapper, files);
    } catch (UsageError e) {
      fail(e.getMessage());
      return;
    }

    FhirContext ctx = FhirContext.forR4Cached();
    ValidationSupportChain chain =
        new ValidationSupportChain(
            new DefaultProfileValidationSupport(ctx),
            new CommonCodeSystemsTerminologyService(ctx),
            new InMemoryTerminologyServerValidationSupport(ctx),
            new SnapshotGeneratingValidationSupport(ctx));
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    FhirValidator validator = ctx.newValidator().registerValidatorModule(module);

    ObjectNode report = mapper.createObjectNode();
    ArrayNode results = report.putArray("results");
    boolean allValid = true;
    for (Input input : inputs) {
      ValidationResult result;
      try {
        result = validator.validateWithResult(mapper.writeValueAsString(input.resource()));
      } catch (IOException | RuntimeException e) {
        // HAPI throws DataFormatException on JSON it cannot parse as a resource at all.
        ObjectNode entry = results.addObject();
        describe(entry, input);
        entry.put("valid", false);
        ObjectNode issue = entry.putArray("issues").addObject();
        issue.put("severity", "fatal");
        issue.put("location", input.resource().path("resourceType").asText(""));
        issue.put("message", String.valueOf(e.getMessage()));
        issue.put("messageId", e.getClass().getSimpleName());
        allValid = false;
        continue;
      }
      ObjectNode entry = results.addObject();
      describe(entry, input);
      boolean valid = true;
      ArrayNode issues = mapper.createArrayNode();
      for (SingleValidationMessage m : result.getMessages()) {
        ResultSeverityEnum severity = m.getSeverity();
        boolean blocking =
            severity == ResultSeverityEnum.ERROR || severity == ResultSeverityEnum.FATAL;
        valid &= !blocking;
        if (blocking || all) {
          ObjectNode issue = issues.addObject();
          issue.put("severity", severity.getCode());
          issue.put("location", m.getLocationString());
          issue.put("message", m.getMessage());
          issue.put("messageId", m.getMessageId());
        }
      }
      entry.put("valid", valid);
      entry.set("issues", issues);
      allValid &= valid;
    }
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    out.println(report.toString());
    out.flush();
    System.exit(allValid ? 0 : 1);
  }

  private static void describe(ObjectNode entry, Input input) {
    entry.put("source", input.source());
    entry.put("resourceType", input.resource().path("resourceType").asText(""));
    entry.put("id", input.resource().path("id").asText(""));
  }

  private static List<Input> readInputs(ObjectMapper mapper, List<String> files)
      throws UsageError {
    List<Input> inputs = new ArrayList<>();
    if (files.isEmpty()) {
      addAll(inputs, "stdin", parse(mapper, "stdin", readStdin()));
    } else {
      for (String file : files) {
        String text;
        try {
          text = Files.readString(Path.of(file), StandardCharsets.UTF_8);
        } catch (IOException e) {
          throw new UsageError("cannot read " + file + ": " + e.getMessage());
        }
        addAll(inputs, file, parse(mapper, file, text));
      }
    }
    if (inputs.isEmpty()) {
      throw new UsageError("no resources to validate");
    }
    return inputs;
  }

  private static String readStdin() throws UsageError {
    try (InputStream in = System.in) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UsageError("cannot read standard input: " + e.getMessage());
    }
  }

  private static JsonNode parse(ObjectMapper mapper, String source, String text)
      throws UsageError {
    try {
      JsonNode node = mapper.readTree(text);
      if (node == null || node.isMissingNode()) {
        throw new UsageError(source + " is empty");
      }
      return node;
    } catch (JsonProcessingException e) {
      throw new UsageError(source + " is not JSON: " + e.getOriginalMessage());
    }
  }

  private static void addAll(List<Input> inputs, String source, JsonNode node) throws UsageError {
    if (node.isArray()) {
      for (int i = 0; i < node.size(); i++) {
        inputs.add(resource(source + "[" + i + "]", node.get(i)));
      }
    } else {
      inputs.add(resource(source, node));
    }
  }

  private static Input resource(String source, JsonNode node) throws UsageError {
    if (!node.isObject() || !node.path("resourceType").isTextual()) {
      throw new UsageError(source + " is not a FHIR resource (a JSON object with resourceType)");
    }
    return new Input(source, node);
  }

  private static void fail(String message) {
    System.err.println(PROG + ": " + message);
    System.exit(2);
  }
}
