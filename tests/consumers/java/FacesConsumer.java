// A Kafka consumer of faceflow's topics written as a Java user would write it: kafka-clients,
// protobuf-java and protobuf-java-util, nothing generated from this repository. It decodes each
// record with the published FileDescriptorSet (`faceflow schema --out DIR`) and prints one JSON line
// per record: {"key": ..., "headers": {name: UTF-8 value}, "value": <the message as JSON>}.
//
// With --json it reads the JSON mirror of a topic instead (the value is the message as proto3 JSON,
// UTF-8) through Kafka Connect's stock JsonConverter (schemas.enable=false), and prints the Connect
// value it makes as "value", and the Java type of each of its top-level fields as "connectTypes"
// ("String", "Long", "Double", "Boolean", "Map", "List"): what a sink connector would be handed.
//
// No build step: the JDK's source launcher runs this file. The suite runs it against the real broker
// (tests/consumers/test_java_consumer.py; the classpath: tests/support_consumers.py):
//
//   java -cp 'JARS/*' FacesConsumer.java --bootstrap localhost:9092 --topic faceflow.faces.v1 \
//        --descriptor-set schema/faceflow.v1.binpb --message faceflow.v1.FaceEvent --count 10
//   java -cp 'JARS/*' FacesConsumer.java --json --bootstrap localhost:9092 --topic TOPIC --count 10
//
// A bad argument exits 2, a timeout or an undecodable record exits 1, each with one line on stderr.

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorSet;
import com.google.protobuf.Descriptors;
import com.google.protobuf.DynamicMessage;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.json.JsonConverter;

public final class FacesConsumer {
    static final String USAGE =
            "usage: FacesConsumer.java --bootstrap HOST:PORT --topic TOPIC --count N [--timeout-s S]"
                    + " (--descriptor-set FILE --message FULL.NAME | --json)";

    /** A wrong command line: exit 2. */
    static final class UsageError extends Exception {
        UsageError(String message) {
            super(message);
        }
    }

    /** Anything else that stops the run (timeout, undecodable record, broker unreachable): exit 1. */
    static final class Failure extends Exception {
        Failure(String message) {
            super(message);
        }
    }

    /** Turns one record value into the fields of its line: "value", and what else the mode shows. */
    interface Decoder {
        JsonObject decode(String topic, byte[] value) throws Failure;
    }

    record Options(
            String bootstrap,
            String topic,
            int count,
            Duration timeout,
            Path descriptorSet,
            String message,
            boolean json) {}

    static final Gson GSON = new GsonBuilder().disableHtmlEscaping().serializeNulls().create();

    public static void main(String[] args) {
        try {
            Options options = parse(args);
            Decoder decoder = options.json() ? jsonMirrorDecoder() : protobufDecoder(options);
            consume(options, decoder);
        } catch (UsageError e) {
            fail(2, e);
        } catch (Failure e) {
            fail(1, e);
        }
    }

    /** One line on stderr, whatever the message (a Kafka error can span lines), then exit. */
    static void fail(int status, Exception e) {
        System.err.println("FacesConsumer: " + String.valueOf(e.getMessage()).replaceAll("\\s*\\R\\s*", " "));
        System.exit(status);
    }

    static Options parse(String[] args) throws UsageError {
        Map<String, String> values = new HashMap<>();
        boolean json = false;
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            switch (arg) {
                case "--json" -> json = true;
                case "--bootstrap", "--topic", "--count", "--timeout-s", "--descriptor-set", "--message" -> {
                    if (i + 1 >= args.length) {
                        throw new UsageError(arg + ": expected a value. " + USAGE);
                    }
                    values.put(arg, args[++i]);
                }
                default -> throw new UsageError("unknown argument " + quote(arg) + ". " + USAGE);
            }
        }
        for (String required : List.of("--bootstrap", "--topic", "--count")) {
            if (!values.containsKey(required)) {
                throw new UsageError(required + " is missing. " + USAGE);
            }
        }
        boolean schemaGiven = values.containsKey("--descriptor-set") || values.containsKey("--message");
        if (json == schemaGiven) {
            throw new UsageError("expected either --descriptor-set and --message, or --json. " + USAGE);
        }
        if (!json && !(values.containsKey("--descriptor-set") && values.containsKey("--message"))) {
            throw new UsageError("--descriptor-set and --message go together. " + USAGE);
        }
        int count = positiveInt("--count", values.get("--count"));
        int timeoutS = positiveInt("--timeout-s", values.getOrDefault("--timeout-s", "30"));
        Path descriptorSet = json ? null : Path.of(values.get("--descriptor-set"));
        return new Options(
                values.get("--bootstrap"),
                values.get("--topic"),
                count,
                Duration.ofSeconds(timeoutS),
                descriptorSet,
                values.get("--message"),
                json);
    }

    static int positiveInt(String name, String text) throws UsageError {
        try {
            int value = Integer.parseInt(text);
            if (value > 0) {
                return value;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new UsageError(name + ": expected a positive integer, got " + quote(text));
    }

    /** Decodes with the message type named in the published FileDescriptorSet. */
    static Decoder protobufDecoder(Options options) throws UsageError {
        Descriptors.Descriptor type = findMessage(loadDescriptorSet(options.descriptorSet()), options);
        JsonFormat.Printer printer =
                JsonFormat.printer().alwaysPrintFieldsWithNoPresence().omittingInsignificantWhitespace();
        return (topic, value) -> {
            try {
                DynamicMessage message = DynamicMessage.parseFrom(type, value);
                JsonObject fields = new JsonObject();
                fields.add("value", JsonParser.parseString(printer.print(message)));
                return fields;
            } catch (InvalidProtocolBufferException e) {
                throw new Failure(
                        "a record of " + topic + " is not a " + type.getFullName() + ": " + e.getMessage());
            }
        };
    }

    /**
     * The set's files built in order. `faceflow schema` writes dependencies first, as protoc's
     * --include_imports does, so each file's imports are already built when it comes.
     */
    static List<Descriptors.FileDescriptor> loadDescriptorSet(Path path) throws UsageError {
        FileDescriptorSet set;
        try {
            set = FileDescriptorSet.parseFrom(Files.readAllBytes(path));
        } catch (InvalidProtocolBufferException e) {
            throw new UsageError("--descriptor-set " + path + ": not a FileDescriptorSet: " + e.getMessage());
        } catch (IOException e) {
            throw new UsageError("--descriptor-set " + path + ": cannot read it: " + e);
        }
        Map<String, Descriptors.FileDescriptor> built = new HashMap<>();
        List<Descriptors.FileDescriptor> files = new ArrayList<>();
        for (FileDescriptorProto proto : set.getFileList()) {
            List<Descriptors.FileDescriptor> deps = new ArrayList<>();
            for (String dep : proto.getDependencyList()) {
                Descriptors.FileDescriptor found = built.get(dep);
                if (found == null) {
                    throw new UsageError("--descriptor-set " + path + ": " + proto.getName() + " imports "
                            + dep + ", which does not come before it in the set");
                }
                deps.add(found);
            }
            try {
                Descriptors.FileDescriptor file = Descriptors.FileDescriptor.buildFrom(
                        proto, deps.toArray(new Descriptors.FileDescriptor[0]));
                built.put(proto.getName(), file);
                files.add(file);
            } catch (Descriptors.DescriptorValidationException e) {
                throw new UsageError(
                        "--descriptor-set " + path + ": " + proto.getName() + ": " + e.getMessage());
            }
        }
        return files;
    }

    static Descriptors.Descriptor findMessage(List<Descriptors.FileDescriptor> files, Options options)
            throws UsageError {
        List<Descriptors.Descriptor> all = new ArrayList<>();
        for (Descriptors.FileDescriptor file : files) {
            collect(file.getMessageTypes(), all);
        }
        for (Descriptors.Descriptor type : all) {
            if (type.getFullName().equals(options.message())) {
                return type;
            }
        }
        throw new UsageError("--message: the descriptor set " + options.descriptorSet() + " has no message "
                + quote(options.message()) + " (it has " + all.size()
                + " messages; give a full name such as faceflow.v1.FaceEvent)");
    }

    static void collect(List<Descriptors.Descriptor> types, List<Descriptors.Descriptor> into) {
        for (Descriptors.Descriptor type : types) {
            into.add(type);
            collect(type.getNestedTypes(), into);
        }
    }

    /** Decodes the JSON mirror as a Kafka Connect sink would, with the stock JsonConverter. */
    static Decoder jsonMirrorDecoder() {
        JsonConverter converter = new JsonConverter();
        converter.configure(Map.of("schemas.enable", "false"), false);
        return (topic, value) -> {
            try {
                SchemaAndValue connect = converter.toConnectData(topic, value);
                if (connect.schema() != null || !(connect.value() instanceof Map)) {
                    throw new Failure("a record of " + topic + " became " + describe(connect)
                            + " in JsonConverter, expected a schemaless map");
                }
                JsonObject fields = new JsonObject();
                fields.add("value", GSON.toJsonTree(connect.value()));
                fields.add("connectTypes", connectTypes((Map<?, ?>) connect.value()));
                return fields;
            } catch (DataException e) {
                throw new Failure("JsonConverter refused a record of " + topic + ": " + e.getMessage());
            }
        };
    }

    /** The Java type JsonConverter gave each top-level field: what a sink connector is handed. */
    static JsonObject connectTypes(Map<?, ?> value) {
        JsonObject types = new JsonObject();
        for (Map.Entry<?, ?> field : value.entrySet()) {
            Object v = field.getValue();
            String type = v == null ? "null" : v instanceof Map ? "Map" : v instanceof List ? "List"
                    : v.getClass().getSimpleName();
            types.addProperty(String.valueOf(field.getKey()), type);
        }
        return types;
    }

    static String describe(SchemaAndValue connect) {
        String type = connect.value() == null ? "null" : connect.value().getClass().getName();
        return type + " with schema " + connect.schema();
    }

    static void consume(Options options, Decoder decoder) throws Failure {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, options.bootstrap());
        config.put(ConsumerConfig.GROUP_ID_CONFIG, "faceflow-java-consumer-" + UUID.randomUUID());
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        PrintStream out =
                new PrintStream(new FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
        long deadline = System.nanoTime() + options.timeout().toNanos();
        int printed = 0;
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(config, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(options.topic()));
            while (printed < options.count()) {
                if (System.nanoTime() > deadline) {
                    throw new Failure("timed out after " + options.timeout().toSeconds() + " s with " + printed
                            + " of " + options.count() + " records from " + options.topic() + " at "
                            + options.bootstrap());
                }
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(500))) {
                    if (printed == options.count()) {
                        break;
                    }
                    out.println(GSON.toJson(line(record, decoder)));
                    printed++;
                }
            }
        } catch (KafkaException e) {
            String cause = e.getCause() == null ? "" : ": " + e.getCause().getMessage();
            throw new Failure("Kafka at " + options.bootstrap() + ": " + e.getMessage() + cause);
        }
    }

    static JsonObject line(ConsumerRecord<byte[], byte[]> record, Decoder decoder) throws Failure {
        JsonObject headers = new JsonObject();
        for (Header header : record.headers()) {
            headers.add(header.key(), utf8(header.value()));
        }
        JsonObject line = new JsonObject();
        line.add("key", utf8(record.key()));
        line.add("headers", headers);
        if (record.value() == null) {
            line.add("value", JsonNull.INSTANCE);
        } else {
            JsonObject fields = decoder.decode(record.topic(), record.value());
            for (Map.Entry<String, JsonElement> field : fields.entrySet()) {
                line.add(field.getKey(), field.getValue());
            }
        }
        return line;
    }

    static JsonElement utf8(byte[] bytes) {
        return bytes == null ? JsonNull.INSTANCE : new JsonPrimitive(new String(bytes, StandardCharsets.UTF_8));
    }

    static String quote(String text) {
        return "'" + text + "'";
    }
}
