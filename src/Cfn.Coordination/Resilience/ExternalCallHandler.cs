using System.Globalization;
using Cfn.Coordination.Metrics;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Resilience;

/// <summary>
/// An <see cref="HttpClient"/> handler for the coordinator's outbound calls (SPEC §2.14; the runbook's "Calling external API" and "external API timeout" lines). For every request:
/// <list type="number">
/// <item>The call goes through the breaker <c>external:{host}</c> of the given <see cref="CircuitBreakerRegistry"/>
/// (<see cref="CircuitBreakerRegistry.ExternalName(Uri)"/>). When it is open the request is rejected with
/// <see cref="CircuitOpenException"/> and nothing is sent.</item>
/// <item>It logs INFO <c>Calling external API {METHOD} {URL}</c>, the URL being the line's last whitespace-separated
/// token, bare, with scheme, host, port and path only (<see cref="SafeUrl"/>): no user info, query or fragment, so no
/// credential or query secret is logged and an operator can pass it to <c>curl</c>.</item>
/// <item>When no response headers arrive within the timeout the request is cancelled, WARN
/// <c>external API timeout url=… timeoutMs=… elapsedMs=…</c> is logged,
/// <c>timeout_events_total{coordinator_id, reason="external"}</c> is incremented, the breaker counts a failure, and
/// <see cref="TimeoutException"/> is thrown.</item>
/// <item>A 5xx response and a transport error (any exception other than the caller's cancellation, subject to the
/// breaker's <see cref="CircuitBreakerOptions.ShouldHandle"/>) count as failures; other responses, 4xx included, as
/// successes. Cancellation by the caller counts as nothing.</item>
/// </list>
/// </summary>
public sealed class ExternalCallHandler : DelegatingHandler
{
    private readonly CircuitBreakerRegistry _breakers;
    private readonly CoordinationMetrics _metrics;
    private readonly string _coordinatorId;
    private readonly TimeSpan _timeout;
    private readonly ILogger _logger;

    /// <summary>Creates the handler; set <see cref="DelegatingHandler.InnerHandler"/> (or use <c>AddHttpMessageHandler</c>).</summary>
    /// <param name="breakers">Source of the <c>external:{host}</c> breakers; its clock times the calls.</param>
    /// <param name="metrics">Metrics that receive <c>timeout_events_total{reason="external"}</c>.</param>
    /// <param name="coordinatorId">The <c>coordinator_id</c> label.</param>
    /// <param name="timeout">Timeout of each call up to its response headers; <see cref="Timeout.InfiniteTimeSpan"/> for none.</param>
    /// <param name="logger">Logger of the call and timeout lines.</param>
    public ExternalCallHandler(
        CircuitBreakerRegistry breakers, CoordinationMetrics metrics, string coordinatorId, TimeSpan timeout, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(breakers);
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentException.ThrowIfNullOrWhiteSpace(coordinatorId);
        ArgumentNullException.ThrowIfNull(logger);
        if (timeout <= TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "the timeout must be positive or Timeout.InfiniteTimeSpan");
        }

        _breakers = breakers;
        _metrics = metrics;
        _coordinatorId = coordinatorId;
        _timeout = timeout;
        _logger = logger;
    }

    /// <summary>
    /// The form of <paramref name="uri"/> that may be logged: <c>scheme://host[:port]/path</c>, with the path
    /// percent-encoded (so it contains no whitespace), and without user info, query or fragment.
    /// </summary>
    public static string SafeUrl(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        if (!uri.IsAbsoluteUri)
        {
            // Never expected (HttpClient resolves against its base address); keep only the path.
            var text = uri.OriginalString;
            var cut = text.IndexOfAny(['?', '#']);
            return Uri.EscapeDataString(cut >= 0 ? text[..cut] : text).Replace("%2F", "/", StringComparison.Ordinal);
        }

        return uri.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);
    }

    /// <inheritdoc/>
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var uri = request.RequestUri ?? throw new InvalidOperationException("the request has no URI");
        var breaker = _breakers.GetOrCreate(CircuitBreakerRegistry.ExternalName(uri));
        var url = SafeUrl(uri);

        using var lease = breaker.Acquire();
        _logger.LogInformation("Calling external API {Method} {Url}", request.Method.Method, url);

        var time = _breakers.TimeProvider;
        var started = time.GetTimestamp();
        using var timeoutSource = _timeout == Timeout.InfiniteTimeSpan
            ? new CancellationTokenSource()
            : new CancellationTokenSource(_timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutSource.Token);
        HttpResponseMessage response;
        try
        {
            response = await base.SendAsync(request, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw; // the caller gave up: no outcome
        }
        catch (Exception e) when (timeoutSource.IsCancellationRequested)
        {
            lease.RecordFailure(null);
            var timeoutMs = (long)_timeout.TotalMilliseconds;
            var elapsedMs = (long)time.GetElapsedTime(started).TotalMilliseconds;
            _metrics.CountTimeout(_coordinatorId, "external");
            _logger.LogWarning("external API timeout timeoutMs={TimeoutMs} elapsedMs={ElapsedMs} method={Method} url={Url}",
                timeoutMs, elapsedMs, request.Method.Method, url);
            throw new TimeoutException(
                string.Create(CultureInfo.InvariantCulture, $"external API timeout after {timeoutMs}ms: {request.Method.Method} {url}"), e);
        }
        catch (Exception e)
        {
            lease.RecordFailure(e);
            throw;
        }

        if ((int)response.StatusCode >= 500)
        {
            lease.RecordFailure(null);
        }
        else
        {
            lease.RecordSuccess();
        }

        return response;
    }
}
