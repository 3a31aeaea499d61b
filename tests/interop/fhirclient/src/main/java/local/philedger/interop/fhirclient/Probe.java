package local.philedger.interop.fhirclient;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.api.SummaryEnum;
import ca.uhn.fhir.rest.client.api.IClientInterceptor;
import ca.uhn.fhir.rest.client.api.IGenericClient;
import ca.uhn.fhir.rest.client.api.IHttpRequest;
import ca.uhn.fhir.rest.client.api.IHttpResponse;
import ca.uhn.fhir.rest.client.interceptor.BearerTokenAuthInterceptor;
import ca.uhn.fhir.rest.gclient.DateClientParam;
import ca.uhn.fhir.rest.gclient.IQuery;
import ca.uhn.fhir.rest.gclient.ReferenceClientParam;
import ca.uhn.fhir.rest.gclient.StringClientParam;
import ca.uhn.fhir.rest.gclient.TokenClientParam;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.Reader;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.List;
import org.hl7.fhir.r4.model.AuditEvent;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.CapabilityStatement;
import org.hl7.fhir.r4.model.CapabilityStatement.CapabilityStatementRestResourceComponent;
import org.hl7.fhir.r4.model.CapabilityStatement.CapabilityStatementRestResourceSearchParamComponent;
import org.hl7.fhir.r4.model.Patient;

/**
 * A FHIR client's walk of the ledger's FHIR API, with HAPI FHIR's generic client (R4).
 *
 * <p>Input (standard input, JSON): {@code {"base", "token", "event", "values": {name: value}}}.
 * It reads the CapabilityStatement, then searches AuditEvent with every search parameter the
 * statement lists, each with the value {@code values[name]} and by the parameter's declared
 * type (a listed parameter without a value, or of a type it cannot search by, is an error: the
 * statement must not list what a client cannot use); the narrowing parameters are combined with
 * {@code patient=values.patient}, since a search must name a patient, agent or entity. Then the
 * {@code patient.identifier} chain, a next page, a read (full and {@code _summary=true}) and a
 * batch of GETs at the base. Every request goes with {@code _format=json} (the client's JSON
 * encoding) and a bearer token.
 *
 * <p>Output (standard output, JSON): {@code {"fhirVersion", "searched": [{"name", "url",
 * "entries", "total"}], "exchanges": [{"method", "url", "status", "body"}], "error"}}: every
 * HTTP exchange as the server sent it, for the caller to validate. Exit 0 when the walk
 * completed, 1 when a request failed or an answer was not what the walk expects.
 */
public final class Probe {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Probe() {}

  /** Keeps every request's method and URL and every response's status and raw body. */
  private static final class Recorder implements IClientInterceptor {
    private final ArrayNode exchanges = JSON.createArrayNode();
    private String method = "";
    private String url = "";

    @Override
    public void interceptRequest(IHttpRequest request) {
      method = request.getHttpVerbName();
      url = request.getUri();
    }

    @Override
    public void interceptResponse(IHttpResponse response) throws IOException {
      response.bufferEntity();
      StringWriter body = new StringWriter();
      try (Reader reader = response.createReader()) {
        reader.transferTo(body);
      }
      ObjectNode exchange = exchanges.addObject();
      exchange.put("method", method);
      exchange.put("url", url);
      exchange.put("status", response.getStatus());
      exchange.put("body", body.toString());
    }
  }

  /** The walk found the server not doing what its statement says. */
  private static final class WalkError extends Exception {
    private static final long serialVersionUID = 1L;

    WalkError(String message) {
      super(message);
    }
  }

  public static void main(String[] args) throws IOException {
    JsonNode input = JSON.readTree(System.in);
    FhirContext ctx = FhirContext.forR4();
    IGenericClient client = ctx.newRestfulGenericClient(input.get("base").asText());
    client.setEncoding(EncodingEnum.JSON);
    client.registerInterceptor(new BearerTokenAuthInterceptor(input.get("token").asText()));
    Recorder recorder = new Recorder();
    client.registerInterceptor(recorder);
    ObjectNode report = JSON.createObjectNode();
    ArrayNode searched = report.putArray("searched");
    int status = 0;
    try {
      walk(client, input, report, searched);
    } catch (WalkError | BaseServerResponseException | IllegalArgumentException e) {
      report.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
      status = 1;
    }
    report.set("exchanges", recorder.exchanges);
    System.out.println(JSON.writeValueAsString(report));
    System.exit(status);
  }

  private static void walk(IGenericClient client, JsonNode input, ObjectNode report, ArrayNode searched)
      throws WalkError {
    CapabilityStatement statement =
        client.capabilities().ofType(CapabilityStatement.class).execute();
    report.put("fhirVersion", statement.getFhirVersion().toCode());
    CapabilityStatementRestResourceComponent auditEvent = null;
    for (CapabilityStatementRestResourceComponent r : statement.getRestFirstRep().getResource()) {
      if ("AuditEvent".equals(r.getType())) {
        auditEvent = r;
      }
    }
    if (auditEvent == null) {
      throw new WalkError("the CapabilityStatement lists no AuditEvent resource");
    }
    JsonNode values = input.get("values");
    String patient = values.get("patient").asText();
    for (CapabilityStatementRestResourceSearchParamComponent sp : auditEvent.getSearchParam()) {
      String name = sp.getName();
      JsonNode value = values.get(name);
      if (value == null) {
        throw new WalkError("no value to search the listed parameter " + name + " with");
      }
      IQuery<Bundle> query =
          client.search().forResource(AuditEvent.class).returnBundle(Bundle.class);
      if (!List.of("patient", "agent", "entity").contains(name)) {
        query = query.where(AuditEvent.PATIENT.hasId(patient));
      }
      query = narrow(query, name, sp.getType().toCode(), value.asText());
      searched.add(outcome(name, query.execute()));
    }
    // The ITI-81 chain, a next page, a read, a summary read and a batch at the base.
    Bundle chained =
        client.search().forResource(AuditEvent.class)
            .where(AuditEvent.PATIENT.hasChainedProperty(Patient.IDENTIFIER.exactly().code(patient)))
            .returnBundle(Bundle.class).execute();
    searched.add(outcome("patient.identifier", chained));
    Bundle first =
        client.search().forResource(AuditEvent.class)
            .where(AuditEvent.PATIENT.hasId(patient)).count(1)
            .returnBundle(Bundle.class).execute();
    if (first.getLink(Bundle.LINK_NEXT) == null) {
      throw new WalkError("a one-entry page of a patient with several events has no next link");
    }
    Bundle second = client.loadPage().next(first).execute();
    String a = first.getEntryFirstRep().getResource().getIdElement().getIdPart();
    String b = second.getEntryFirstRep().getResource().getIdElement().getIdPart();
    if (a.equals(b)) {
      throw new WalkError("the next page repeats the first page's entry");
    }
    String event = input.get("event").asText();
    AuditEvent read = client.read().resource(AuditEvent.class).withId(event).execute();
    if (!event.equals(read.getIdElement().getIdPart())) {
      throw new WalkError("read returned another AuditEvent");
    }
    client.read().resource(AuditEvent.class).withId(event).summaryMode(SummaryEnum.TRUE).execute();
    Bundle batch = new Bundle().setType(Bundle.BundleType.BATCH);
    batch.addEntry().getRequest().setMethod(Bundle.HTTPVerb.GET)
        .setUrl("AuditEvent?patient=" + patient + "&_count=2");
    batch.addEntry().getRequest().setMethod(Bundle.HTTPVerb.GET).setUrl("AuditEvent/" + event);
    batch.addEntry().getRequest().setMethod(Bundle.HTTPVerb.GET).setUrl("metadata");
    Bundle answer = client.transaction().withBundle(batch).execute();
    if (answer.getType() != Bundle.BundleType.BATCHRESPONSE || answer.getEntry().size() != 3) {
      throw new WalkError("the batch was not answered with three batch-response entries");
    }
    for (Bundle.BundleEntryComponent e : answer.getEntry()) {
      if (!e.getResponse().getStatus().startsWith("200")) {
        throw new WalkError("a batch entry failed: " + e.getResponse().getStatus());
      }
    }
  }

  private static IQuery<Bundle> narrow(IQuery<Bundle> query, String name, String type, String value)
      throws WalkError {
    switch (name) {
      case "_count":
        return query.count(Integer.parseInt(value));
      case "_summary":
        return query.summaryMode(SummaryEnum.fromCode(value));
      case "_elements":
        return query.elementsSubset(value.split(","));
      case "_format":
        return query.encodedJson();
      default:
        break;
    }
    switch (type) {
      case "reference":
        return query.where(new ReferenceClientParam(name).hasId(value));
      case "token":
        int bar = value.lastIndexOf('|');
        TokenClientParam token = new TokenClientParam(name);
        return query.where(
            bar < 0
                ? token.exactly().code(value)
                : token.exactly().systemAndCode(value.substring(0, bar), value.substring(bar + 1)));
      case "string":
        return query.where(new StringClientParam(name).matches().value(value));
      case "date":
        return query.where(new DateClientParam(name).afterOrEquals().day(value));
      default:
        throw new WalkError("parameter " + name + " has a type no client can search by: " + type);
    }
  }

  private static ObjectNode outcome(String name, Bundle bundle) {
    ObjectNode out = JSON.createObjectNode();
    out.put("name", name);
    out.put("url", bundle.getLink(Bundle.LINK_SELF) == null ? "" : bundle.getLink(Bundle.LINK_SELF).getUrl());
    out.put("entries", bundle.getEntry().size());
    if (bundle.hasTotal()) {
      out.put("total", bundle.getTotal());
    }
    List<String> ids = new ArrayList<>();
    for (Bundle.BundleEntryComponent e : bundle.getEntry()) {
      ids.add(e.getResource().getIdElement().getIdPart());
    }
    out.set("ids", JSON.valueToTree(ids));
    return out;
  }
}
