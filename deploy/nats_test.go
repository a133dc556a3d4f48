package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/leadflow/leadflow/internal/query"
	"github.com/leadflow/leadflow/internal/stream"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"
)

// natsAccount is the NATS account leadflow and its upstream apps share.
const natsAccount = "LEADFLOW"

// natsBundle is the NATS cluster's manifests and its parsed nats.conf.
type natsBundle struct {
	*bundle
	conf string            // nats.conf as written
	vars map[string]string // the nats-users Secret, the variables nats.conf reads
	cfg  config.Config     // leadflow's configuration on Kubernetes
}

func setupNATS(t *testing.T) *natsBundle {
	t.Helper()
	b := setup(t)
	nb := &natsBundle{bundle: b}
	nb.conf = stringMap(t, dig(t, b.find(t, "ConfigMap", "nats-config"), "data"))["nats.conf"]
	require.NotEmpty(t, nb.conf)
	nb.vars = stringMap(t, dig(t, b.find(t, "Secret", "nats-users"), "stringData"))
	env := map[string]string{}
	for k, v := range b.config {
		env[k] = v
	}
	for k, v := range b.secret {
		env[k] = v
	}
	nb.cfg = configFrom(t, env)
	return nb
}

// options parses nats.conf as nats-server does, with the variables the pods
// get from the nats-users Secret and the server name they get from their
// pod name.
func (nb *natsBundle) options(t *testing.T) *server.Options {
	t.Helper()
	var conf strings.Builder
	for k, v := range nb.vars {
		fmt.Fprintf(&conf, "%s: %q\n", k, v)
	}
	conf.WriteString(nb.conf)
	path := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf.String()), 0o600))
	opts, err := server.ProcessConfigFile(path)
	require.NoError(t, err, "nats.conf")
	opts.ServerName = "nats-0"
	return opts
}

// user is the user of the leadflow account called name.
func user(t *testing.T, opts *server.Options, name string) *server.User {
	t.Helper()
	for _, u := range opts.Users {
		if u.Username == name {
			require.NotNil(t, u.Account)
			require.Equal(t, natsAccount, u.Account.Name)
			require.NotNil(t, u.Permissions)
			return u
		}
	}
	t.Fatalf("nats.conf has no user %q", name)
	return nil
}

func TestNATSClusterConfig(t *testing.T) {
	t.Parallel()
	nb := setupNATS(t)
	opts := nb.options(t)

	require.True(t, opts.JetStream)
	require.True(t, opts.SyncAlways, "jetstream { sync_interval: always }")
	require.NotEmpty(t, opts.StoreDir)
	require.Equal(t, 8222, opts.HTTPPort, "KEDA reads /jsz on the monitoring port")

	sts := nb.find(t, "StatefulSet", "nats")
	replicas := dig(t, sts, "spec", "replicas").(int)
	require.Equal(t, 3, replicas)
	require.Equal(t, "Parallel", dig(t, sts, "spec", "podManagementPolicy"))
	require.NotEmpty(t, opts.Cluster.Name)
	require.Equal(t, 6222, opts.Cluster.Port)
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	var want []string
	for i := range replicas {
		want = append(want, fmt.Sprintf("nats-%d.%s.%s.svc.cluster.local:6222", i, dig(t, sts, "spec", "serviceName"), namespace))
	}
	require.ElementsMatch(t, want, routes, "a route to every pod of the StatefulSet")

	// Each server is named after its pod: KEDA finds a consumer's leader by
	// that name under the headless Service.
	c := onlyContainer(t, sts)
	cmd := dig(t, c, "command").([]any)
	at := slices.Index(cmd, any("--server_name"))
	require.GreaterOrEqual(t, at, 0)
	require.Equal(t, "$(POD_NAME)", cmd[at+1])
	require.Equal(t, "metadata.name", dig(t, c, "env", 0, "valueFrom", "fieldRef", "fieldPath"))
	require.Equal(t, "POD_NAME", dig(t, c, "env", 0, "name"))

	// Every password nats.conf reads comes from the Secret the pods load.
	for _, m := range regexp.MustCompile(`password:\s*\$(\w+)`).FindAllStringSubmatch(nb.conf, -1) {
		require.Contains(t, nb.vars, m[1])
	}
	require.Equal(t, "nats-users", dig(t, c, "envFrom", 0, "secretRef", "name"))

	// The configuration passes nats-server's own validation.
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	s.Shutdown()
}

// checkSubject fails unless subject is one leadflow's contract or its
// JetStream use names, with the streams and consumer of cfg.
func checkSubject(t *testing.T, cfg config.Config, subject string) {
	t.Helper()
	streams := []string{cfg.RequestsStream, cfg.EventsStream, cfg.DeadLetterStream}
	switch {
	case subject == "_INBOX.>":
	case strings.HasPrefix(subject, "$JS.API.STREAM."):
		op, name, ok := strings.Cut(strings.TrimPrefix(subject, "$JS.API.STREAM."), ".")
		require.True(t, ok, subject)
		require.Contains(t, []string{"CREATE", "UPDATE", "INFO"}, op, subject)
		require.Contains(t, streams, name, subject)
	case strings.HasPrefix(subject, "$JS.API.CONSUMER."):
		rest := strings.TrimPrefix(subject, "$JS.API.CONSUMER.")
		var op string
		for _, o := range []string{"CREATE.", "INFO.", "DELETE.", "MSG.NEXT."} {
			if strings.HasPrefix(rest, o) {
				op, rest = o, strings.TrimPrefix(rest, o)
			}
		}
		require.NotEmpty(t, op, subject)
		name, consumer, ok := strings.Cut(rest, ".")
		require.True(t, ok, subject)
		require.Contains(t, streams, name, subject)
		if name == cfg.RequestsStream {
			require.Equal(t, cfg.Consumer, consumer, "%s: only leadflow's consumer reads requests", subject)
		}
	case strings.HasPrefix(subject, "$JS.ACK."):
		name, _, _ := strings.Cut(strings.TrimPrefix(subject, "$JS.ACK."), ".")
		require.Contains(t, streams, name, subject)
	default:
		known := slices.Concat(stream.RequestSubjects, stream.EventSubjects, []string{cfg.DeadLetterPrefix + ".>"},
			query.Subjects, []string{serviceDiscovery})
		require.Contains(t, known, subject, "a subject leadflow does not use")
	}
}

// serviceDiscovery is what the leadflow NATS service's $SRV subjects need.
const serviceDiscovery = "$SRV.>"

// contractSubjects are the subjects of list that are not JetStream API calls
// or inboxes.
func contractSubjects(list []string) []string {
	var out []string
	for _, s := range list {
		if !strings.HasPrefix(s, "$JS.") && !strings.HasPrefix(s, "_INBOX.") {
			out = append(out, s)
		}
	}
	return out
}

func TestNATSPermissionsNameOnlyLeadflowSubjects(t *testing.T) {
	t.Parallel()
	nb := setupNATS(t)
	opts := nb.options(t)
	for _, u := range opts.Users {
		p := u.Permissions
		require.NotNil(t, p, "user %s has permissions", u.Username)
		require.NotNil(t, p.Publish, u.Username)
		require.NotNil(t, p.Subscribe, u.Username)
		require.Empty(t, p.Publish.Deny, "allow lists only: %s", u.Username)
		require.Empty(t, p.Subscribe.Deny, "allow lists only: %s", u.Username)
		for _, s := range slices.Concat(p.Publish.Allow, p.Subscribe.Allow) {
			checkSubject(t, nb.cfg, s)
		}
	}

	lf := user(t, opts, "leadflow").Permissions
	require.ElementsMatch(t, slices.Concat(stream.EventSubjects, []string{nb.cfg.DeadLetterPrefix + ".>"}),
		contractSubjects(lf.Publish.Allow), "leadflow publishes events and dead letters")
	require.ElementsMatch(t, slices.Concat([]string{"_INBOX.>"}, query.Subjects, []string{serviceDiscovery}), lf.Subscribe.Allow,
		"leadflow subscribes to replies and to its service's requests")
	require.NotNil(t, lf.Response, "leadflow answers its service's requests")

	up := user(t, opts, "upstream").Permissions
	require.ElementsMatch(t, slices.Concat(stream.RequestSubjects, query.Subjects, []string{serviceDiscovery}),
		contractSubjects(up.Publish.Allow), "upstream publishes requests and asks the service")
	require.Equal(t, []string{"_INBOX.>"}, up.Subscribe.Allow, "upstream subscribes to replies only")
	require.Nil(t, up.Response)
	for _, s := range up.Publish.Allow {
		if strings.HasPrefix(s, "$JS.") && s != "$JS.API.STREAM.INFO."+nb.cfg.RequestsStream {
			require.Contains(t, s, "."+nb.cfg.EventsStream, "upstream reads LEAD_EVENTS and nothing else")
		}
	}

	// The NATS URL leadflow connects with is the leadflow user's.
	u, err := url.Parse(nb.cfg.NATSURL)
	require.NoError(t, err)
	require.Equal(t, "leadflow", u.User.Username())
	pass, _ := u.User.Password()
	require.Equal(t, user(t, opts, "leadflow").Password, pass, "LEADFLOW_NATS_URL's password is NATS_PASSWORD_LEADFLOW")
}

// connection is a client of the test server with the errors the server sent
// it asynchronously (permission violations).
type connection struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func connect(t *testing.T, s *server.Server, opts *server.Options, name string) *connection {
	t.Helper()
	c := &connection{errs: make(chan error, 16)}
	var err error
	c.nc, err = nats.Connect(s.ClientURL(), nats.UserInfo(name, user(t, opts, name).Password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.errs <- err }))
	require.NoError(t, err)
	t.Cleanup(c.nc.Close)
	c.js, err = jetstream.New(c.nc)
	require.NoError(t, err)
	return c
}

// requireDenied runs do and requires the server to refuse it for lack of
// permission on subject.
func (c *connection) requireDenied(t *testing.T, subject string, do func() error) {
	t.Helper()
	require.NoError(t, do())
	require.NoError(t, c.nc.Flush())
	select {
	case err := <-c.errs:
		require.ErrorIs(t, err, nats.ErrPermissionViolation)
		require.Contains(t, err.Error(), subject)
	case <-time.After(5 * time.Second):
		t.Fatalf("the server allowed %s", subject)
	}
}

// TestNATSPermissionsAreEnough runs nats.conf's accounts and permissions on
// one in-process server and does, as each user, what leadflow and an
// upstream app do: what they need works, the rest is refused.
func TestNATSPermissionsAreEnough(t *testing.T) {
	t.Parallel()
	nb := setupNATS(t)
	opts := nb.options(t)
	// One server, not the cluster: no routes, a throwaway store, any port.
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	opts.StoreDir, opts.PidFile = t.TempDir(), ""
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	require.True(t, s.ReadyForConnections(10*time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := nb.cfg
	cfg.Replicas = 1
	topo := stream.New(cfg)

	lf := connect(t, s, opts, "leadflow")
	require.NoError(t, topo.Ensure(ctx, lf.js), "create the streams and the consumer")
	require.NoError(t, topo.Ensure(ctx, lf.js), "update them")
	require.NoError(t, topo.Ready(ctx, lf.js))

	up := connect(t, s, opts, "upstream")
	// `leadflow import` checks both streams before it publishes.
	_, err = up.js.Stream(ctx, cfg.RequestsStream)
	require.NoError(t, err)
	_, err = up.js.Stream(ctx, cfg.EventsStream)
	require.NoError(t, err)
	for _, subject := range stream.RequestSubjects {
		msg := nats.NewMsg(subject)
		msg.Data = []byte(`{}`)
		msg.Header.Set(jetstream.MsgIDHeader, "key-"+subject)
		_, err := up.js.PublishMsg(ctx, msg)
		require.NoError(t, err, "upstream publishes %s", subject)
	}

	// The worker: pull, report progress, acknowledge, redeliver later,
	// terminate, dead-letter.
	cons, err := lf.js.Consumer(ctx, cfg.RequestsStream, cfg.Consumer)
	require.NoError(t, err)
	it, err := cons.Messages(jetstream.PullMaxMessages(cfg.Workers))
	require.NoError(t, err)
	defer it.Stop()
	for done := map[string]bool{}; len(done) < len(stream.RequestSubjects); {
		msg, err := it.Next(jetstream.NextContext(ctx))
		require.NoError(t, err)
		md, err := msg.Metadata()
		require.NoError(t, err)
		switch msg.Subject() {
		case "lead.qualify.requested":
			require.NoError(t, msg.InProgress())
			require.NoError(t, msg.DoubleAck(ctx))
		case "lead.disqualify.requested":
			if md.NumDelivered == 1 {
				require.NoError(t, msg.NakWithDelay(10*time.Millisecond))
				continue
			}
			require.NoError(t, msg.DoubleAck(ctx))
		case "lead.reactivate.requested":
			dead := nats.NewMsg(topo.DeadLetterSubject(msg.Subject()))
			dead.Data = msg.Data()
			dead.Header.Set(jetstream.MsgIDHeader, "dead-"+msg.Subject())
			_, err := lf.js.PublishMsg(ctx, dead)
			require.NoError(t, err, "leadflow publishes a dead letter")
			require.NoError(t, msg.Term())
		}
		done[msg.Subject()] = true
	}

	// The relay: asynchronous publishes with PubAcks.
	for _, subject := range stream.EventSubjects {
		msg := nats.NewMsg(subject)
		msg.Data = []byte(`{}`)
		msg.Header.Set(jetstream.MsgIDHeader, "event-"+subject)
		_, err := lf.js.PublishMsgAsync(msg)
		require.NoError(t, err)
	}
	select {
	case <-lf.js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("no PubAcks for the events")
	}
	require.Zero(t, lf.js.PublishAsyncPending())

	// Upstream reads the events with a durable consumer of its own and with
	// an ordered consumer.
	durable, err := up.js.CreateOrUpdateConsumer(ctx, cfg.EventsStream, jetstream.ConsumerConfig{Durable: "billing"})
	require.NoError(t, err)
	batch, err := durable.Fetch(len(stream.EventSubjects), jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var got []string
	for msg := range batch.Messages() {
		got = append(got, msg.Subject())
		require.NoError(t, msg.DoubleAck(ctx))
	}
	require.NoError(t, batch.Error())
	require.Equal(t, stream.EventSubjects, got)
	// A downstream service binds to its durable again after a restart.
	durable, err = up.js.Consumer(ctx, cfg.EventsStream, "billing")
	require.NoError(t, err)
	info, err := durable.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(len(stream.EventSubjects)), info.AckFloor.Stream)
	ordered, err := up.js.OrderedConsumer(ctx, cfg.EventsStream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	msg, err := ordered.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	require.Equal(t, stream.EventSubjects[0], msg.Subject())

	// The leadflow service: leadflow answers on its endpoints and $SRV
	// subjects, upstream asks.
	svc, err := micro.AddService(lf.nc, micro.Config{Name: query.Name, Version: query.Version})
	require.NoError(t, err)
	for _, subject := range query.Subjects {
		require.NoError(t, svc.AddEndpoint(strings.ReplaceAll(subject, ".", "_"),
			micro.HandlerFunc(func(r micro.Request) { _ = r.Respond([]byte(`{}`)) }), micro.WithEndpointSubject(subject)))
	}
	require.NoError(t, lf.nc.Flush())
	for _, subject := range append([]string{"$SRV.PING", "$SRV.INFO." + query.Name}, query.Subjects...) {
		msg, err := up.nc.Request(subject, []byte(`{}`), 5*time.Second)
		require.NoError(t, err, "upstream asks %s", subject)
		require.NotEmpty(t, msg.Data, subject)
	}
	require.NoError(t, svc.Stop())

	// What neither of them may do.
	up.requireDenied(t, "lead.qualified", func() error { return up.nc.Publish("lead.qualified", nil) })
	up.requireDenied(t, "leadflow.dead.lead.qualify.requested", func() error {
		return up.nc.Publish("leadflow.dead.lead.qualify.requested", nil)
	})
	up.requireDenied(t, "$JS.API.CONSUMER.CREATE.LEAD_REQUESTS.mine", func() error {
		return up.nc.Publish("$JS.API.CONSUMER.CREATE.LEAD_REQUESTS.mine", nil)
	})
	up.requireDenied(t, "$JS.API.STREAM.DELETE.LEAD_EVENTS", func() error {
		return up.nc.Publish("$JS.API.STREAM.DELETE.LEAD_EVENTS", nil)
	})
	lf.requireDenied(t, "lead.qualify.requested", func() error { return lf.nc.Publish("lead.qualify.requested", nil) })
	lf.requireDenied(t, "$JS.API.STREAM.DELETE.LEAD_REQUESTS", func() error {
		return lf.nc.Publish("$JS.API.STREAM.DELETE.LEAD_REQUESTS", nil)
	})
	lf.requireDenied(t, "$JS.API.STREAM.PURGE.LEAD_EVENTS", func() error {
		return lf.nc.Publish("$JS.API.STREAM.PURGE.LEAD_EVENTS", nil)
	})
	lf.requireDenied(t, "lead.>", func() error {
		_, err := lf.nc.SubscribeSync("lead.>")
		return err
	})

	require.Empty(t, drain(lf.errs), "leadflow hit no other permission error")
	require.Empty(t, drain(up.errs), "upstream hit no other permission error")
}

func drain(errs chan error) []error {
	var out []error
	for {
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				continue
			}
			out = append(out, err)
		default:
			return out
		}
	}
}
