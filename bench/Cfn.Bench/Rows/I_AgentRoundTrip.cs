using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Signals;

namespace Cfn.Bench.Rows;

/// <summary>
/// i: an agent's request/reply round trip through each way of plugging in (docs/agents.md): A sends a validation
/// request to B, B receives it (verified and ACKed) and replies, A receives the reply. One sample is A's send to A
/// holding the reply. Through the library (in-process), the <c>cfn agent</c> verbs (one process per verb, as a shell
/// agent runs them) and an HTTP agent session on a real <c>cfn serve --role swarm-manager</c> over loopback.
/// </summary>
internal sealed class I_AgentRoundTrip : IRow
{
    private static readonly JsonElement Request = JsonSerializer.SerializeToElement(new { n = 4 });
    private static readonly JsonElement Verdict = JsonSerializer.SerializeToElement(new { verdict = "pass" });

    /// <summary>Round trips before the measured ones (JIT, connections, first script loads), for the in-process paths.</summary>
    private const int Warmup = 10;

    public string Key => "i";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var library = await LibraryAsync(ctx, ctx.Quick ? 50 : 300);
        await ctx.FlushAsync();
        var http = await HttpSessionAsync(ctx, ctx.Quick ? 30 : 200);
        await ctx.FlushAsync();
        var (verbs, verbProcess) = await VerbsAsync(ctx, ctx.Quick ? 2 : 10);
        await ctx.FlushAsync();

        var json = new JsonObject { ["library"] = library, ["http_session"] = http, ["cfn_agent"] = verbs, ["cfn_agent_verb_process"] = verbProcess };
        const string Measure = "agent round trip: request sent → reply received";
        return new RowResult(json,
        [
            Line(ctx, library, Measure, $"library, in-process; {library["samples"]} round trips"),
            Line(ctx, http, Measure, $"HTTP agent session, loopback, `cfn serve`; {http["samples"]} round trips"),
            Line(ctx, verbs, Measure, $"`cfn agent` verbs, one process each (4 per round trip; one verb process p50 {Stats.F(Stats.Get(verbProcess, "p50_ms"))} ms); {verbs["samples"]} round trips"),
        ]);
    }

    private static TableLine Line(BenchContext ctx, JsonObject summary, string measure, string setup) =>
        new("i", measure, setup, Stats.Describe(summary), ctx.Floor.Multiple(summary), "—", "—", null);

    private static JsonObject Summary(List<double> samples)
    {
        var summary = Stats.Summary(samples);
        summary["samples"] = samples.Count;
        return summary;
    }

    /// <summary>Two coordinators of the library; B answers in its own loop, as a validator would.</summary>
    private static async Task<JsonObject> LibraryAsync(BenchContext ctx, int count)
    {
        var a = await ctx.StartAsync(ctx.Id("i-lib-a", 0));
        var b = await ctx.StartAsync(ctx.Id("i-lib-b", 0));
        using var stop = new CancellationTokenSource();
        var answering = Task.Run(async () =>
        {
            await foreach (var request in b.Inbox.ReadAllAsync(stop.Token))
            {
                await b.Inbox.CompleteAsync(request);
                await b.Signals.ReplyAsync(a.Id, request.Signal.MessageId, 1, Verdict);
            }
        });
        var replies = a.Inbox.ReadAllAsync(stop.Token).GetAsyncEnumerator();
        var samples = new List<double>();
        for (var i = -Warmup; i < count; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await a.Signals.SendAsync(b.Id, SignalTypes.Validation, i + Warmup, Request);
            if (!await replies.MoveNextAsync())
            {
                throw new InvalidOperationException("row i: the library's reply never came");
            }

            await a.Inbox.CompleteAsync(replies.Current);
            if (i >= 0)
            {
                samples.Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
            }
        }

        await StopAsync(stop, answering);

        await replies.DisposeAsync();
        await BenchContext.DropAsync([a, b]);
        return Summary(samples);
    }

    /// <summary>Two sessions on a real <c>cfn serve --role swarm-manager</c>; B long-polls and replies in its own loop.</summary>
    private static async Task<JsonObject> HttpSessionAsync(BenchContext ctx, int count)
    {
        var port = CfnExecutable.FreePort();
        using var serve = CfnExecutable.Start(ctx, "i", ["serve", "--role", "swarm-manager"], new() { ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture) });
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
            await CfnExecutable.WaitReadyAsync(http, serve, "i");
            var a = await CreateSessionAsync(http, ctx.Id("i-http-a", 0));
            var b = await CreateSessionAsync(http, ctx.Id("i-http-b", 0));
            using var stop = new CancellationTokenSource();
            var answering = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var request = await ActAsync(http, b, "receive", new { timeoutMs = 1000 }, stop.Token);
                    if (request.TryGetProperty("messageId", out var id))
                    {
                        await ActAsync(http, b, "reply", new { to = request.GetProperty("senderId").GetString(), inReplyTo = id.GetString(), payload = Verdict },
                            stop.Token);
                    }
                }
            });
            var samples = new List<double>();
            for (var i = -Warmup; i < count; i++)
            {
                var start = Stopwatch.GetTimestamp();
                await ActAsync(http, a, "send", new { to = b.AgentId, type = SignalTypes.Validation, payload = Request, iteration = i + Warmup }, CancellationToken.None);
                var reply = await ActAsync(http, a, "receive", new { timeoutMs = 30000 }, CancellationToken.None);
                if (!reply.TryGetProperty("messageId", out _))
                {
                    throw new InvalidOperationException("row i: the HTTP session's reply never came: " + reply);
                }

                if (i >= 0)
                {
                    samples.Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
                }
            }

            await StopAsync(stop, answering);

            return Summary(samples);
        }
        finally
        {
            serve.Kill(entireProcessTree: true);
            await serve.WaitForExitAsync();
        }
    }

    /// <summary>
    /// Two agents held alive in this process (as <c>cfn agent run</c> holds them) and the four verbs of a round trip run
    /// as processes with their identity: A send, B receive, B reply, A receive.
    /// </summary>
    private static async Task<(JsonObject RoundTrip, JsonObject Verb)> VerbsAsync(BenchContext ctx, int count)
    {
        var a = await Coordinator.StartAgentAsync(ctx.Redis, ctx.Keys, ctx.Id("i-sh-a", 0), "bench", AgentKind.Shell, ctx.Metrics);
        var b = await Coordinator.StartAgentAsync(ctx.Redis, ctx.Keys, ctx.Id("i-sh-b", 0), "validators", AgentKind.Shell, ctx.Metrics);
        var samples = new List<double>();
        var verbs = new List<double>();
        try
        {
            for (var i = 0; i < count; i++)
            {
                var start = Stopwatch.GetTimestamp();
                await VerbAsync(ctx, a, verbs, "send", "--to", b.Id, "--type", SignalTypes.Validation, "--payload", Request.GetRawText());
                using var request = JsonDocument.Parse(await VerbAsync(ctx, b, verbs, "receive", "--timeout-ms", "30000"));
                await VerbAsync(ctx, b, verbs, "reply", "--to", a.Id, "--in-reply-to", request.RootElement.GetProperty("messageId").GetString()!,
                    "--payload", Verdict.GetRawText());
                await VerbAsync(ctx, a, verbs, "receive", "--timeout-ms", "30000");
                samples.Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
            }
        }
        finally
        {
            await BenchContext.DropAsync([a, b]);
        }

        return (Summary(samples), Summary(verbs));
    }

    private static async Task<string> VerbAsync(BenchContext ctx, Coordinator agent, List<double> durations, params string[] args)
    {
        var start = Stopwatch.GetTimestamp();
        using var process = CfnExecutable.Start(ctx, "i", ["agent", .. args], new()
        {
            ["CFN_AGENT_ID"] = agent.Id,
            ["CFN_SWARM_ID"] = agent.SwarmId,
            ["CFN_AGENT_EPOCH"] = agent.Epoch.ToString(CultureInfo.InvariantCulture),
        });
        var output = await process.StandardOutput.ReadToEndAsync();
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        durations.Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
        return process.ExitCode == 0 ? output : throw new InvalidOperationException($"row i: cfn agent {args[0]} exited {process.ExitCode}: {error}");
    }

    private sealed record Session(string Id, string Token, string AgentId);

    private static async Task<Session> CreateSessionAsync(HttpClient http, string agentId)
    {
        using var response = await http.PostAsJsonAsync("/api/agents/sessions", new { agentId, swarmId = "bench", leaseMs = 120_000 });
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return response.StatusCode == HttpStatusCode.Created
            ? new Session(body.GetProperty("sessionId").GetString()!, body.GetProperty("token").GetString()!, agentId)
            : throw new InvalidOperationException($"row i: creating a session gave {response.StatusCode}: {body}");
    }

    private static async Task<JsonElement> ActAsync(HttpClient http, Session session, string action, object body, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/agents/sessions/{session.Id}/{action}") { Content = JsonContent.Create(body) };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", session.Token);
        using var response = await http.SendAsync(request, cancellationToken);
        var answer = await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
        return response.IsSuccessStatusCode ? answer : throw new InvalidOperationException($"row i: {action} gave {response.StatusCode}: {answer}");
    }

    /// <summary>Stops B's answering loop.</summary>
    private static async Task StopAsync(CancellationTokenSource stop, Task answering)
    {
        await stop.CancelAsync();
        try
        {
            await answering;
        }
        catch (OperationCanceledException)
        {
            // stopped
        }
    }
}
