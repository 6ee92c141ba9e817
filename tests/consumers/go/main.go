// A Kafka consumer of faceflow's topics written as a Go user would write it: franz-go and
// google.golang.org/protobuf, nothing generated from this repository. It decodes each record with
// the published FileDescriptorSet (`faceflow schema --out DIR`) and prints one JSON line per record:
// {"key": ..., "headers": {name: UTF-8 value}, "value": <the message as proto3 JSON>}.
//
// With --json it reads the JSON mirror of a topic instead (the value is the message as proto3 JSON,
// UTF-8), parses it with encoding/json as a Go program would (numbers kept exact), and prints it as
// "value".
//
// Build it with tests/consumers/go/build.sh (into .cache/bin/faces-consumer-go). The suite runs it
// against the real broker (tests/consumers/test_go_consumer.py):
//
//	faces-consumer-go --bootstrap localhost:9092 --topic faceflow.faces.v1 \
//	    --descriptor-set schema/faceflow.v1.binpb --message faceflow.v1.FaceEvent --count 10
//	faces-consumer-go --json --bootstrap localhost:9092 --topic TOPIC --count 10
//
// A bad argument exits 2, a timeout or an undecodable record exits 1, each with one line on stderr.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

const usage = "usage: faces-consumer-go --bootstrap HOST:PORT --topic TOPIC --count N [--timeout-s S]" +
	" (--descriptor-set FILE --message FULL.NAME | --json)"

// usageError is a wrong command line: exit 2. Any other error stops the run with exit 1.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type options struct {
	bootstrap     string
	topic         string
	count         int
	timeoutS      int
	descriptorSet string
	message       string
	json          bool
}

// decoder turns one record value into the JSON of its line's "value".
type decoder func(topic string, value []byte) (json.RawMessage, error)

// line is one printed record; a struct, so that the fields come in this order.
type line struct {
	Key     *string           `json:"key"`
	Headers map[string]string `json:"headers"`
	Value   json.RawMessage   `json:"value"`
}

func main() {
	err := run(os.Args[1:])
	if err == nil {
		return
	}
	status := 1
	var u usageError
	if errors.As(err, &u) {
		status = 2
	}
	fail(status, err)
}

var lineBreaks = regexp.MustCompile(`\s*[\r\n]+\s*`)

// fail prints one line on stderr, whatever the message (a Kafka error can span lines), then exits.
func fail(status int, err error) {
	fmt.Fprintln(os.Stderr, "faces-consumer-go: "+lineBreaks.ReplaceAllString(err.Error(), " "))
	os.Exit(status)
}

func run(args []string) error {
	opts, err := parse(args)
	if err != nil {
		return err
	}
	var decode decoder
	if opts.json {
		decode = jsonMirrorDecoder
	} else if decode, err = protobufDecoder(opts); err != nil {
		return err
	}
	return consume(opts, decode)
}

func parse(args []string) (options, error) {
	values := map[string]string{}
	jsonMode := false
	for i := 0; i < len(args); i++ {
		switch arg := args[i]; arg {
		case "--json":
			jsonMode = true
		case "--bootstrap", "--topic", "--count", "--timeout-s", "--descriptor-set", "--message":
			if i+1 >= len(args) {
				return options{}, usagef("%s: expected a value. %s", arg, usage)
			}
			i++
			values[arg] = args[i]
		default:
			return options{}, usagef("unknown argument %s. %s", quote(arg), usage)
		}
	}
	for _, required := range []string{"--bootstrap", "--topic", "--count"} {
		if _, ok := values[required]; !ok {
			return options{}, usagef("%s is missing. %s", required, usage)
		}
	}
	_, haveSet := values["--descriptor-set"]
	_, haveMessage := values["--message"]
	if jsonMode == (haveSet || haveMessage) {
		return options{}, usagef("expected either --descriptor-set and --message, or --json. %s", usage)
	}
	if !jsonMode && !(haveSet && haveMessage) {
		return options{}, usagef("--descriptor-set and --message go together. %s", usage)
	}
	count, err := positiveInt("--count", values["--count"])
	if err != nil {
		return options{}, err
	}
	timeout, ok := values["--timeout-s"]
	if !ok {
		timeout = "30"
	}
	timeoutS, err := positiveInt("--timeout-s", timeout)
	if err != nil {
		return options{}, err
	}
	return options{
		bootstrap:     values["--bootstrap"],
		topic:         values["--topic"],
		count:         count,
		timeoutS:      timeoutS,
		descriptorSet: values["--descriptor-set"],
		message:       values["--message"],
		json:          jsonMode,
	}, nil
}

func positiveInt(name, text string) (int, error) {
	if value, err := strconv.Atoi(text); err == nil && value > 0 {
		return value, nil
	}
	return 0, usagef("%s: expected a positive integer, got %s", name, quote(text))
}

// protobufDecoder decodes with the message type named in the published FileDescriptorSet.
func protobufDecoder(opts options) (decoder, error) {
	files, err := loadDescriptorSet(opts.descriptorSet)
	if err != nil {
		return nil, err
	}
	desc, err := files.FindDescriptorByName(protoreflect.FullName(opts.message))
	message, isMessage := desc.(protoreflect.MessageDescriptor)
	if err != nil || !isMessage {
		return nil, usagef("--message: the descriptor set %s has no message %s (it has %d messages; "+
			"give a full name such as faceflow.v1.FaceEvent)", opts.descriptorSet, quote(opts.message),
			countMessages(files))
	}
	// EmitDefaultValues is what Python's always_print_fields_with_no_presence and Java's
	// alwaysPrintFieldsWithNoPresence() do: zeros, "" and [] are printed, an unset message field is
	// left out. (EmitUnpopulated would also print every unset message field as null.)
	printer := protojson.MarshalOptions{EmitDefaultValues: true}
	return func(topic string, value []byte) (json.RawMessage, error) {
		m := dynamicpb.NewMessage(message)
		if err := proto.Unmarshal(value, m); err != nil {
			return nil, fmt.Errorf("a record of %s is not a %s: %w", topic, message.FullName(), err)
		}
		text, err := printer.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("a record of %s: cannot print its %s as JSON: %w", topic, message.FullName(), err)
		}
		return text, nil
	}, nil
}

// loadDescriptorSet builds the set's files into a registry of their own. protodesc.NewFiles resolves
// each file's imports within the set, in whatever order the set lists them.
func loadDescriptorSet(path string) (*protoregistry.Files, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--descriptor-set %s: cannot read it: %v", path, err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return nil, usagef("--descriptor-set %s: not a FileDescriptorSet: %v", path, err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, usagef("--descriptor-set %s: %v", path, err)
	}
	return files, nil
}

func countMessages(files *protoregistry.Files) int {
	n := 0
	var walk func(protoreflect.MessageDescriptors)
	walk = func(messages protoreflect.MessageDescriptors) {
		for i := 0; i < messages.Len(); i++ {
			n++
			walk(messages.Get(i).Messages())
		}
	}
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		walk(f.Messages())
		return true
	})
	return n
}

// jsonMirrorDecoder reads a JSON mirror value as a Go program would: encoding/json into a map, with
// UseNumber so that no number is rounded through float64 on the way.
func jsonMirrorDecoder(topic string, value []byte) (json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(value))
	d.UseNumber()
	var fields map[string]any
	if err := d.Decode(&fields); err != nil || fields == nil || d.More() {
		return nil, fmt.Errorf("a record of %s is not one JSON object: %v", topic, err)
	}
	return marshal(fields)
}

func consume(opts options, decode decoder) error {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(opts.bootstrap, ",")...),
		kgo.ConsumeTopics(opts.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The producer's lz4 (or gzip, snappy, zstd) batches are decompressed by kgo itself.
	)
	if err != nil {
		return usagef("--bootstrap %s: %v", opts.bootstrap, err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(opts.timeoutS)*time.Second)
	defer cancel()
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	printed := 0
	var lastRetryable error
	for printed < opts.count {
		fetches := client.PollFetches(ctx)
		for _, fe := range fetches.Errors() {
			var typed *kerr.Error
			switch {
			case errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled):
				return timedOut(opts, printed, lastRetryable)
			case errors.As(fe.Err, &typed):
				lastRetryable = fe.Err // a broker error the client retries on its own
			default:
				return fmt.Errorf("Kafka at %s: %s[%d]: %v", opts.bootstrap, fe.Topic, fe.Partition, fe.Err)
			}
		}
		for iter := fetches.RecordIter(); !iter.Done() && printed < opts.count; {
			l, err := recordLine(iter.Next(), decode)
			if err != nil {
				return err
			}
			if err := out.Encode(l); err != nil {
				return fmt.Errorf("cannot write to stdout: %w", err)
			}
			printed++
		}
		if printed < opts.count && ctx.Err() != nil {
			return timedOut(opts, printed, lastRetryable)
		}
	}
	return nil
}

func timedOut(opts options, printed int, last error) error {
	msg := fmt.Sprintf("timed out after %d s with %d of %d records from %s at %s",
		opts.timeoutS, printed, opts.count, opts.topic, opts.bootstrap)
	if last != nil {
		msg += fmt.Sprintf(" (last broker error: %v)", last)
	}
	return errors.New(msg)
}

func recordLine(r *kgo.Record, decode decoder) (line, error) {
	l := line{Headers: map[string]string{}, Value: json.RawMessage("null")}
	if r.Key != nil {
		key := string(r.Key)
		l.Key = &key
	}
	for _, h := range r.Headers {
		l.Headers[h.Key] = string(h.Value)
	}
	if r.Value != nil {
		value, err := decode(r.Topic, r.Value)
		if err != nil {
			return line{}, err
		}
		l.Value = value
	}
	return l, nil
}

func marshal(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func quote(text string) string { return "'" + text + "'" }
