using System.Net;
using System.Text;
using System.Text.Json;
using Cfn.Coordination.Tests.Resilience;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;

namespace Cfn.Coordination.Tests.Validation;

/// <summary>
/// <c>VALIDATION_URL</c> against a real HTTP server on loopback (HttpListener), from a validator started on the real
/// redis-server: the request JSON is POSTed through the validator's external-call handler (its breaker and log lines),
/// and every way the endpoint can answer maps to a verdict.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class HttpValidationTests(RedisServer server)
{
    private static ValidationRequest Request(string workId) => new()
    {
        WorkId = workId,
        Input = JsonSerializer.SerializeToElement(new { code = "print(1)" }),
        RequestedAt = 1_700_000_000_000,
    };

    [Fact]
    public async Task Pass_EndpointAnswersAVerdict_RequestPostedThroughTheExternalCallHandler()
    {
        await using var h = Harness.Create(server);
        await using var validator = await h.StartAsync(TestIds.New("validator"), "validators");
        string? body = null;
        using var endpoint = new Endpoint(async (request, response) =>
        {
            using var reader = new StreamReader(request.InputStream, Encoding.UTF8);
            body = await reader.ReadToEndAsync();
            await response.WriteAsync(200, """{"verdict":"pass","reason":"all checks green"}""");
        });
        using var validation = new HttpValidation(validator, Options(endpoint.Url));

        var verdict = await validation.ValidateAsync(Request("work-h1"), CancellationToken.None);

        Assert.True(verdict.Passed);
        Assert.Equal("all checks green", verdict.Reason);
        using var posted = JsonDocument.Parse(body!);
        Assert.Equal("work-h1", posted.RootElement.GetProperty("workId").GetString());
        Assert.Equal("print(1)", posted.RootElement.GetProperty("input").GetProperty("code").GetString());
        Assert.Contains(h.Messages, m => m.EndsWith("Calling external API POST " + endpoint.Url, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(500, "{\"verdict\":\"pass\"}", "validation URL answered HTTP 500")]
    [InlineData(200, "<html>ok</html>", "validation URL answer is not a verdict: not JSON")]
    [InlineData(200, "{\"verdict\":\"fail\",\"reason\":\"lint errors\"}", "lint errors")]
    public async Task Answers_EachMapsToItsVerdict(int status, string answer, string reason)
    {
        await using var h = Harness.Create(server);
        await using var validator = await h.StartAsync(TestIds.New("validator"), "validators");
        using var endpoint = new Endpoint((_, response) => response.WriteAsync(status, answer));
        using var validation = new HttpValidation(validator, Options(endpoint.Url));

        var verdict = await validation.ValidateAsync(Request("work-h2"), CancellationToken.None);

        Assert.False(verdict.Passed);
        Assert.StartsWith(reason, verdict.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Timeout_EndpointNeverAnswers_FailAndTheBreakerCountsIt()
    {
        await using var h = Harness.Create(server);
        await using var validator = await h.StartAsync(TestIds.New("validator"), "validators");
        using var release = new CancellationTokenSource();
        using var endpoint = new Endpoint(async (_, response) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, release.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            await response.WriteAsync(200, """{"verdict":"pass"}""");
        });
        using var validation = new HttpValidation(validator, Options(endpoint.Url, timeoutMs: 600));

        var verdict = await validation.ValidateAsync(Request("work-h3"), CancellationToken.None);
        await release.CancelAsync();

        Assert.False(verdict.Passed);
        Assert.Contains("timed out", verdict.Reason, StringComparison.Ordinal);
        var breaker = h.Redis.Breakers.GetOrCreate($"external:127.0.0.1:{endpoint.Port}");
        Assert.Equal(1, breaker.GetSnapshot().ConsecutiveFailures);
    }

    [Fact]
    public async Task Unreachable_NothingListens_Fail()
    {
        await using var h = Harness.Create(server);
        await using var validator = await h.StartAsync(TestIds.New("validator"), "validators");
        using var validation = new HttpValidation(validator, Options(new Uri($"http://127.0.0.1:{LoopbackHttpServer.UnusedPort()}/check")));

        var verdict = await validation.ValidateAsync(Request("work-h4"), CancellationToken.None);

        Assert.False(verdict.Passed);
        Assert.StartsWith("validation URL unreachable: ", verdict.Reason, StringComparison.Ordinal);
    }

    private static ValidatorOptions Options(Uri url, int timeoutMs = 10_000) =>
        new() { Url = url, Timeout = TimeSpan.FromMilliseconds(timeoutMs) };

    /// <summary>A real HTTP endpoint on a free loopback port.</summary>
    private sealed class Endpoint : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _loop;

        public Endpoint(Func<HttpListenerRequest, HttpListenerResponse, Task> handle)
        {
            Port = LoopbackHttpServer.UnusedPort();
            Url = new Uri($"http://127.0.0.1:{Port}/check");
            _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            _listener.Start();
            _loop = Task.Run(async () =>
            {
                while (_listener.IsListening)
                {
                    HttpListenerContext context;
                    try
                    {
                        context = await _listener.GetContextAsync();
                    }
                    catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                    {
                        return;
                    }

                    _ = Task.Run(async () => await handle(context.Request, context.Response));
                }
            });
        }

        public int Port { get; }

        public Uri Url { get; }

        public void Dispose()
        {
            _listener.Stop();
            _listener.Close();
        }
    }
}

internal static class ListenerResponses
{
    public static async Task WriteAsync(this HttpListenerResponse response, int status, string body)
    {
        try
        {
            response.StatusCode = status;
            response.ContentType = "application/json";
            var bytes = Encoding.UTF8.GetBytes(body);
            response.ContentLength64 = bytes.Length;
            await response.OutputStream.WriteAsync(bytes);
            response.Close();
        }
        catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
        {
            // the client gave up (the timeout case)
        }
    }
}
