using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Inspection;
using Cfn.Coordination.Recovery;

namespace Cfn.Bench.Rows;

/// <summary>
/// j: what the live dashboard (issue 15) costs at N coordinators. N coordinators registered the real way (no heartbeat
/// loops: the stale threshold is 120 s, longer than a sub-run), about a third of them blocking in a real wait
/// (<c>WaitForAcksAsync</c> on a registered peer that never ACKs) and two more waiting for each other (a 2-node cycle).
/// One <see cref="LiveView"/> as a swarm-manager or timeout-handler process holds it:
/// <list type="bullet">
/// <item>refreshes back to back: each <c>RefreshAsync</c> timed, Redis commands per refresh (INFO commandstats delta,
/// server-wide: the waits are idle, row f), bench CPU and bytes allocated per refresh;</item>
/// <item>refreshes 1 s apart (the default <c>DASHBOARD_REFRESH_MS</c>): what a subscriber (one open page) is sent, as the
/// SSE endpoint frames it (<c>event: E\ndata: D\n\n</c>), per second; how often the snapshot changed, and how often it
/// changed other than in its clock-derived fields (now, ages, wait durations, the alerts' texts); how many bytes the rows
/// that changed take (what sending only changed rows would send), with and without those fields;</item>
/// <item>at the largest N, the fan-out of a real <c>cfn serve --role swarm-manager</c>: Redis commands/s and the server's
/// CPU with no page and with P pages on <c>/api/dashboard/events</c>, bytes/s each page received, time to each page's
/// first snapshot.</item>
/// </list>
/// </summary>
internal sealed class J_Dashboard : IRow
{
    public string Key => "j";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        int[] counts = ctx.Quick ? [10, 100] : [10, 100, 1_000];
        var json = new JsonObject();
        var lines = new List<TableLine>();
        foreach (var n in counts)
        {
            var (result, line) = await MeasureAsync(ctx, n, fanOut: n == counts[^1]);
            json[n.ToString(CultureInfo.InvariantCulture)] = result;
            lines.AddRange(line);
        }

        return new RowResult(json, lines);
    }

    private static async Task<(JsonObject Json, List<TableLine> Lines)> MeasureAsync(BenchContext ctx, int n, bool fanOut)
    {
        var backToBack = ctx.Quick ? 5 : 20;
        var paced = ctx.Quick ? 2 : 15;
        await ctx.FlushAsync();
        var coordinators = await ctx.StartManyAsync($"j{n}", n);
        using var cancel = new CancellationTokenSource();
        // A third wait on a peer outside the waiters (a live coordinator that never ACKs); the last two wait for each other.
        var blocking = n / 3;
        var waits = new List<Task<Cfn.Coordination.Acks.AckWaitResult>>();
        for (var i = 0; i < blocking; i++)
        {
            var (from, to) = (coordinators[i], coordinators[blocking + i]);
            waits.Add(from.Waiter.WaitForAcksAsync([to.Id], $"{from.Id}:{to.Id}:completion:0:j{i}", TimeSpan.FromHours(1), cancel.Token));
        }

        var (a, b) = (coordinators[^2], coordinators[^1]);
        waits.Add(a.Waiter.WaitForAcksAsync([b.Id], $"{a.Id}:{b.Id}:completion:0:jcycle", TimeSpan.FromHours(1), cancel.Token));
        waits.Add(b.Waiter.WaitForAcksAsync([a.Id], $"{b.Id}:{a.Id}:completion:0:jcycle", TimeSpan.FromHours(1), cancel.Token));
        var inspector = new CoordinationInspector(ctx.Redis);
        var settle = Stopwatch.StartNew();
        while ((await inspector.ReadBlockingActivityAsync(10_000)).Count < waits.Count)
        {
            if (settle.Elapsed > TimeSpan.FromSeconds(60))
            {
                throw new TimeoutException($"row j: {waits.Count} waits were not all announced within 60 s");
            }

            await Task.Delay(50);
        }

        var json = new JsonObject { ["coordinators"] = n, ["blocking"] = waits.Count };
        var lines = new List<TableLine>();
        await using (var view = new LiveView(ctx.Redis, new RecoveryOptions(), "bench", ["timeout-handler"], TimeSpan.FromSeconds(1),
                         new Prometheus.CollectorRegistry()))
        {
            // Three pages: one counts bytes, all three keep what they were given (the same strings, or not).
            var pages = Enumerable.Range(0, 3).Select(_ => new Page()).ToArray();
            var subscriptions = pages.Select(p => view.Subscribe(p.On)).ToList();
            await view.RefreshAsync(); // the first snapshot (and the first read of every key, as after a start)
            var first = view.SnapshotJson;
            var seen = Seen(first);
            json["seen"] = seen;
            json["snapshot_bytes"] = Utf8(first);
            json["snapshot_gzip_bytes"] = Gzip(first);

            // Cost: back to back.
            var durations = new List<double>();
            await ctx.ResetStatsAsync();
            var cpu = ProcessCpu.Self();
            var allocated = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < backToBack; i++)
            {
                var start = Stopwatch.GetTimestamp();
                await view.RefreshAsync();
                durations.Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
            }

            var perRefreshAllocated = (GC.GetTotalAllocatedBytes(precise: true) - allocated) / (double)backToBack;
            var perRefreshCpuMs = (ProcessCpu.Self() - cpu) * 1000 / backToBack;
            var calls = await ctx.CommandCallsAsync();
            var commands = calls.Values.Sum() / (double)backToBack;
            var refresh = Stats.Summary(durations);
            json["refresh"] = refresh;
            json["refreshes_back_to_back"] = backToBack;
            json["commands_per_refresh"] = Stats.Round(commands, 1);
            json["commands_per_refresh_by_name"] = new JsonObject(calls.OrderByDescending(kv => kv.Value)
                .Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Stats.Round(kv.Value / (double)backToBack, 2))));
            json["bench_cpu_ms_per_refresh"] = Stats.Round(perRefreshCpuMs, 2);
            json["allocated_bytes_per_refresh"] = Stats.Round(perRefreshAllocated, 0);

            // What a page is sent: refreshes 1 s apart, as the loop does by default.
            foreach (var page in pages)
            {
                page.Clear();
            }

            var snapshots = new List<string> { view.SnapshotJson };
            var clock = Stopwatch.StartNew();
            for (var k = 1; k <= paced; k++)
            {
                var due = TimeSpan.FromSeconds(k) - clock.Elapsed;
                if (due > TimeSpan.Zero)
                {
                    await Task.Delay(due);
                }

                await view.RefreshAsync();
                snapshots.Add(view.SnapshotJson);
            }

            var seconds = (double)paced; // one refresh per second
            var page0 = pages[0];
            var changed = page0.Events.Count(e => e.Event == "snapshot");
            var changedBesidesClock = 0;
            double deltaBytes = 0, deltaBytesWithoutClock = 0;
            for (var k = 1; k < snapshots.Count; k++)
            {
                var (before, after) = (JsonNode.Parse(snapshots[k - 1])!, JsonNode.Parse(snapshots[k])!);
                deltaBytes += Delta(before, after);
                var (calmBefore, calmAfter) = (WithoutClock(before), WithoutClock(after));
                deltaBytesWithoutClock += Delta(calmBefore, calmAfter);
                if (!JsonNode.DeepEquals(calmBefore, calmAfter))
                {
                    changedBesidesClock++;
                }
            }

            var sameStrings = pages.Skip(1).All(p => p.Events.Count == page0.Events.Count &&
                                                      p.Events.Zip(page0.Events).All(pair => ReferenceEquals(pair.First.Data, pair.Second.Data)));
            json["refreshes_paced"] = paced;
            json["snapshot_events"] = changed;
            json["snapshot_changed_besides_clock"] = changedBesidesClock;
            json["timeline_events"] = page0.Events.Count(e => e.Event == "timeline");
            json["sse_bytes_per_s_per_page"] = Stats.Round(page0.Bytes / seconds, 0);
            json["sse_timeline_bytes_per_s_per_page"] = Stats.Round(page0.TimelineBytes / seconds, 0);
            json["changed_rows_bytes_per_s"] = Stats.Round(deltaBytes / seconds, 0);
            json["changed_rows_bytes_per_s_without_clock_fields"] = Stats.Round(deltaBytesWithoutClock / seconds, 0);
            json["every_page_same_strings"] = sameStrings;
            json["initial_bytes_per_page"] = Utf8(Frame("snapshot", view.SnapshotJson)) + view.Timeline.Sum(t => Utf8(Frame("timeline", t)));
            foreach (var subscription in subscriptions)
            {
                subscription.Dispose();
            }

            var ping = ctx.Floor.PingP50Ms;
            lines.Add(new TableLine("j", "live dashboard: one refresh of the process's reader; what each open page is sent",
                $"{n:N0} coordinators, {waits.Count} blocking (a 2-node cycle among them); {backToBack} refreshes back to back, {paced} 1 s apart",
                $"refresh p50 {Stats.F(Stats.Get(refresh, "p50_ms"))} ms, p95 {Stats.F(Stats.Get(refresh, "p95_ms"))} ms; {Stats.F(commands)} Redis commands per refresh; " +
                $"snapshot {Kb(Utf8(first))} ({Kb(Gzip(first))} gzipped); changed at {changed} of {paced} refreshes ({changedBesidesClock} other than its clock fields); " +
                $"SSE {Kb(page0.Bytes / seconds)}/s per page (the rows that changed: {Kb(deltaBytes / seconds)}/s; without the clock fields {Kb(deltaBytesWithoutClock / seconds)}/s); " +
                $"every page the same strings: {(sameStrings ? "yes" : "NO")}",
                $"×{Stats.F(Stats.Get(refresh, "p50_ms") / ping)} (p50)", "—", "—", null));

            if (fanOut)
            {
                var http = await FanOutAsync(ctx, n);
                json["http_fan_out"] = http;
                lines.Add(new TableLine("j", "live dashboard: fan-out of a real `cfn serve --role swarm-manager` (DASHBOARD_REFRESH_MS 1000)",
                    $"{n:N0} coordinators as above; {http["window_s"]} s each: no page open, {http["pages"]} pages on /api/dashboard/events, none again",
                    $"Redis commands/s: {Stats.F(Stats.Get(http, "commands_per_s_no_page"))} with no page, {Stats.F(Stats.Get(http, "commands_per_s_pages"))} with {http["pages"]}, " +
                    $"{Stats.F(Stats.Get(http, "commands_per_s_no_page_after"))} with none again; server CPU {Stats.F(Stats.Get(http, "server_cpu_percent_pages"))} % of one core " +
                    $"with the pages, {Stats.F(Stats.Get(http, "server_cpu_percent_no_page_after"))} % with none again ({Stats.F(Stats.Get(http, "server_cpu_percent_no_page"))} % in the first window, after its start); " +
                    $"each page received {Kb(Stats.Get(http, "page_bytes_per_s_min"))}/s–{Kb(Stats.Get(http, "page_bytes_per_s_max"))}/s; " +
                    $"first snapshot on a page p50 {Stats.F(Stats.Get(http, "first_snapshot_p50_ms"))} ms, max {Stats.F(Stats.Get(http, "first_snapshot_max_ms"))} ms ({Kb(Stats.Get(http, "first_snapshot_bytes"))})",
                    "—", "—", "—", null));
            }
        }

        await cancel.CancelAsync();
        await Task.WhenAll(waits);
        await BenchContext.DropAsync(coordinators);
        await ctx.FlushAsync();
        return (json, lines);
    }

    /// <summary>
    /// A real <c>cfn serve --role swarm-manager</c> on the bench's database (with its N coordinators): Redis commands/s
    /// and the server's CPU with no page, then with P pages streaming; what each page received.
    /// </summary>
    private static async Task<JsonObject> FanOutAsync(BenchContext ctx, int n)
    {
        var pages = ctx.Quick ? 3 : 20;
        var window = TimeSpan.FromSeconds(ctx.Quick ? 2 : 6);
        var port = CfnExecutable.FreePort();
        using var serve = CfnExecutable.Start(ctx, "j", ["serve", "--role", "swarm-manager"], new()
        {
            ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["DASHBOARD_REFRESH_MS"] = "1000",
        });
        using var stop = new CancellationTokenSource();
        var streams = new List<Task>();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = Timeout.InfiniteTimeSpan };
            await CfnExecutable.WaitReadyAsync(http, serve, "j");
            // Its view has read the N coordinators.
            var ready = Stopwatch.StartNew();
            while (Seen(await http.GetStringAsync("/api/dashboard/snapshot"))["participants"]!.GetValue<int>() < n)
            {
                if (ready.Elapsed > TimeSpan.FromSeconds(30))
                {
                    throw new TimeoutException("row j: cfn serve's dashboard did not list the coordinators within 30 s");
                }

                await Task.Delay(100);
            }

            await Task.Delay(ctx.Quick ? 500 : 2000); // past its start: connections, scripts loaded, the first passes compiled
            var (noPageCalls, noPageCpu) = await WindowAsync(ctx, serve.Id, window);

            var readers = Enumerable.Range(0, pages).Select(_ => new StreamReaderPage()).ToArray();
            streams.AddRange(readers.Select(r => r.RunAsync(http, stop.Token)));
            var opened = Stopwatch.StartNew();
            while (readers.Any(r => r.FirstSnapshotMs is null))
            {
                if (opened.Elapsed > TimeSpan.FromSeconds(30))
                {
                    throw new TimeoutException("row j: a page got no snapshot within 30 s");
                }

                await Task.Delay(20);
            }

            // Each page's rate from its own whole events: bytes between the last event it had whole before the window and
            // the last one after it, over the time between the two (a fixed window would count 5 or 7 refreshes in 6 s).
            // Marks taken at an event a refresh sent (the first snapshot came at the page's own time), so that the span
            // between two marks is whole refresh periods.
            var initial = readers.Select(r => r.LastEvent).ToArray();
            while (readers.Where((r, i) => r.LastEvent.At == initial[i].At).Any() && opened.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(20);
            }

            var before = readers.Select(r => r.LastEvent).ToArray();
            var (pageCalls, pageCpu) = await WindowAsync(ctx, serve.Id, window);
            var perPage = readers.Select((r, i) => (r.LastEvent, Before: before[i]))
                .Where(m => m.LastEvent.At > m.Before.At)
                .Select(m => (m.LastEvent.Bytes - m.Before.Bytes) / Stats.Ms(m.Before.At, m.LastEvent.At) * 1000).ToList();

            var firsts = readers.Select(r => r.FirstSnapshotMs!.Value).Order().ToList();
            await ClosePagesAsync(stop, streams);
            await Task.Delay(500);
            var (afterCalls, afterCpu) = await WindowAsync(ctx, serve.Id, window);
            return new JsonObject
            {
                ["pages"] = pages,
                ["window_s"] = window.TotalSeconds,
                ["commands_per_s_no_page"] = Stats.Round(noPageCalls.Values.Sum() / window.TotalSeconds, 1),
                ["commands_per_s_pages"] = Stats.Round(pageCalls.Values.Sum() / window.TotalSeconds, 1),
                ["commands_per_s_no_page_after"] = Stats.Round(afterCalls.Values.Sum() / window.TotalSeconds, 1),
                ["commands_by_name_no_page"] = new JsonObject(noPageCalls.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
                ["commands_by_name_pages"] = new JsonObject(pageCalls.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
                ["server_cpu_percent_no_page"] = Stats.Round(noPageCpu * 100 / window.TotalSeconds, 1),
                ["server_cpu_percent_pages"] = Stats.Round(pageCpu * 100 / window.TotalSeconds, 1),
                ["server_cpu_percent_no_page_after"] = Stats.Round(afterCpu * 100 / window.TotalSeconds, 1),
                ["pages_with_events_in_window"] = perPage.Count,
                ["page_bytes_per_s_min"] = Stats.Round(perPage.DefaultIfEmpty(double.NaN).Min(), 0),
                ["page_bytes_per_s_max"] = Stats.Round(perPage.DefaultIfEmpty(double.NaN).Max(), 0),
                ["first_snapshot_p50_ms"] = Stats.Round(Stats.Percentile(firsts, 0.5), 1),
                ["first_snapshot_max_ms"] = Stats.Round(firsts[^1], 1),
                ["first_snapshot_bytes"] = (double)readers.Max(r => r.FirstSnapshotBytes),
            };
        }
        finally
        {
            await ClosePagesAsync(stop, streams);
            serve.Kill(entireProcessTree: true);
            await serve.WaitForExitAsync();
        }
    }

    /// <summary>Closes the pages (their requests cancelled) and waits for their readers to end.</summary>
    private static async Task ClosePagesAsync(CancellationTokenSource stop, List<Task> streams)
    {
        await stop.CancelAsync();
        try
        {
            await Task.WhenAll(streams);
        }
        catch (Exception e) when (e is OperationCanceledException or HttpRequestException or IOException)
        {
            // the pages closed
        }
    }

    /// <summary>Redis commands and the server's CPU seconds over <paramref name="window"/>.</summary>
    private static async Task<(Dictionary<string, long> Calls, double CpuSeconds)> WindowAsync(BenchContext ctx, int pid, TimeSpan window)
    {
        await ctx.ResetStatsAsync();
        var cpu = ProcessCpu.Seconds(pid) ?? 0;
        await Task.Delay(window);
        var calls = await ctx.CommandCallsAsync();
        return (calls, (ProcessCpu.Seconds(pid) ?? 0) - cpu);
    }

    /// <summary>What a snapshot shows: participants, live, blocking, wait edges, cycles.</summary>
    private static JsonObject Seen(string snapshot)
    {
        var root = JsonNode.Parse(snapshot)!.AsObject();
        var swarms = root["swarms"]?.AsArray() ?? [];
        return new JsonObject
        {
            ["participants"] = root["participants"]?.AsArray().Count ?? 0,
            ["live"] = swarms.Sum(s => s!["live"]!.GetValue<int>()),
            ["blocking"] = swarms.Sum(s => s!["blocking"]!.GetValue<int>()),
            ["wait_edges"] = root["waits"]?["edges"]?.AsArray().Count ?? 0,
            ["cycles"] = root["waits"]?["cycles"]?.AsArray().Count ?? 0,
        };
    }

    /// <summary>The fields derived from the clock at the refresh (they change every refresh while nothing else does).</summary>
    private static readonly string[] ClockFields = ["now", "heartbeatAgeMs", "blockingForMs", "forMs", "ageMs", "leaseLeftMs"];

    /// <summary>A copy without the clock-derived fields, and without the alerts' texts (which quote current wait durations).</summary>
    private static JsonNode WithoutClock(JsonNode node)
    {
        var copy = node.DeepClone();
        Strip(copy);
        foreach (var alert in copy["alerts"]?.AsArray() ?? [])
        {
            alert!.AsObject().Remove("summary");
        }

        return copy;

        static void Strip(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o:
                    foreach (var field in ClockFields)
                    {
                        o.Remove(field);
                    }

                    foreach (var (_, value) in o)
                    {
                        Strip(value);
                    }

                    break;
                case JsonArray array:
                    foreach (var item in array)
                    {
                        Strip(item);
                    }

                    break;
            }
        }
    }

    /// <summary>
    /// Bytes a diff would send from <paramref name="before"/> to <paramref name="after"/>: of an array, the elements not in
    /// the previous one (a changed row whole); of an object, its changed fields (with their names); else the value.
    /// </summary>
    private static long Delta(JsonNode? before, JsonNode? after)
    {
        if (JsonNode.DeepEquals(before, after))
        {
            return 0;
        }

        switch (after)
        {
            case JsonArray array when before is JsonArray old:
                var previous = old.Select(e => e?.ToJsonString() ?? "null").ToHashSet(StringComparer.Ordinal);
                return 2 + array.Select(e => e?.ToJsonString() ?? "null").Where(e => !previous.Contains(e)).Sum(e => (long)Utf8(e) + 1);
            case JsonObject o when before is JsonObject oldObject:
                long sum = 0;
                foreach (var (name, value) in o)
                {
                    var d = Delta(oldObject[name], value);
                    sum += d == 0 ? 0 : d + Utf8(name) + 4;
                }

                return sum;
            default:
                return after is null ? 4 : Utf8(after.ToJsonString());
        }
    }

    private static string Frame(string name, string data) => $"event: {name}\ndata: {data}\n\n";

    private static int Utf8(string text) => Encoding.UTF8.GetByteCount(text);

    private static long Gzip(string text)
    {
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(Encoding.UTF8.GetBytes(text));
        }

        return buffer.Length;
    }

    private static string Kb(double bytes) => bytes >= 1024 ? $"{Stats.F(bytes / 1024)} KB" : $"{Stats.F(bytes)} B";

    /// <summary>One subscriber of the view, as the SSE endpoint's queue is: what it was given, and the bytes it would write.</summary>
    private sealed class Page
    {
        private readonly object _gate = new();

        public List<(string Event, string Data)> Events { get; } = [];

        public long Bytes { get; private set; }

        public long TimelineBytes { get; private set; }

        public void On(string name, string data)
        {
            var bytes = Utf8(Frame(name, data));
            lock (_gate)
            {
                Events.Add((name, data));
                Bytes += bytes;
                TimelineBytes += name == "timeline" ? bytes : 0;
            }
        }

        public void Clear()
        {
            lock (_gate)
            {
                Events.Clear();
                Bytes = 0;
                TimelineBytes = 0;
            }
        }
    }

    /// <summary>One page on the real endpoint: counts the bytes it reads; notes when its first snapshot was whole.</summary>
    private sealed class StreamReaderPage
    {
        private readonly object _gate = new();
        private (long Bytes, long At) _lastEvent;
        private long _bytes;
        private bool _newline;

        /// <summary>Bytes up to the end of the last whole event received, and when it ended (Stopwatch timestamp).</summary>
        public (long Bytes, long At) LastEvent
        {
            get
            {
                lock (_gate)
                {
                    return _lastEvent;
                }
            }
        }

        public double? FirstSnapshotMs { get; private set; }

        public long FirstSnapshotBytes { get; private set; }

        public async Task RunAsync(HttpClient http, CancellationToken cancellationToken)
        {
            var start = Stopwatch.GetTimestamp();
            using var response = await http.GetAsync("/api/dashboard/events", HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            response.EnsureSuccessStatusCode();
            await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
            var buffer = new byte[64 * 1024];
            var head = new StringBuilder();
            var decoder = Encoding.UTF8.GetDecoder();
            var chars = new char[buffer.Length];
            while (true)
            {
                var read = await stream.ReadAsync(buffer, cancellationToken);
                if (read == 0)
                {
                    return;
                }

                // An event ends with a blank line; its JSON data holds no raw newline.
                for (var i = 0; i < read; i++)
                {
                    if (buffer[i] == '\n' && _newline)
                    {
                        lock (_gate)
                        {
                            _lastEvent = (_bytes + i + 1, Stopwatch.GetTimestamp());
                        }
                    }

                    _newline = buffer[i] == '\n';
                }

                _bytes += read;
                if (FirstSnapshotMs is null)
                {
                    var count = decoder.GetChars(buffer, 0, read, chars, 0);
                    head.Append(chars, 0, count);
                    var text = head.ToString();
                    var at = text.IndexOf("event: snapshot\ndata: ", StringComparison.Ordinal);
                    var end = at < 0 ? -1 : text.IndexOf("\n\n", at, StringComparison.Ordinal);
                    if (end >= 0)
                    {
                        FirstSnapshotBytes = Utf8(text[..(end + 2)]);
                        FirstSnapshotMs = Stats.Ms(start, Stopwatch.GetTimestamp());
                        head.Clear();
                    }
                }
            }
        }
    }
}
