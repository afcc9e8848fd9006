using System.Globalization;
using System.Text;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Validation;

/// <summary>
/// Validation by the user's own endpoint (<c>VALIDATION_URL</c>, SPEC D21): the request JSON
/// <c>{"workId","input","requestedAt"}</c> is POSTed and a verdict JSON <c>{"verdict":"pass"|"fail","reason":"…"}</c>
/// comes back with a 2xx status. Calls go through the validator's external-call handler: its <c>external:{host}</c>
/// breaker, the <c>Calling external API POST {url}</c> and timeout lines and metrics. A non-2xx answer, a body that is
/// not a verdict, a timeout (<c>VALIDATION_TIMEOUT_MS</c>) or an open breaker is a fail verdict saying which.
/// </summary>
public sealed class HttpValidation : IValidation, IDisposable
{
    private const int MaxResponseBytes = 1 << 20;

    private readonly HttpClient _client;
    private readonly Uri _url;
    private readonly TimeSpan _timeout;
    private readonly ILogger _logger;

    /// <summary>Posts to <see cref="ValidatorOptions.Url"/> on behalf of <paramref name="validator"/> (its breakers and metrics).</summary>
    public HttpValidation(Coordinator validator, ValidatorOptions options, ILogger? logger = null)
        : this(CoordinatorLoop.CreateExternalClient(validator, (options ?? throw new ArgumentNullException(nameof(options))).Timeout), options, logger)
    {
    }

    /// <summary>Posts with <paramref name="client"/> (which it then owns).</summary>
    internal HttpValidation(HttpClient client, ValidatorOptions options, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _client = client;
        _url = options.Url ?? throw new ArgumentException("the options name no VALIDATION_URL", nameof(options));
        _timeout = options.Timeout;
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    }

    /// <inheritdoc/>
    public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        // The handler times the call up to its response headers (and counts a timeout against the breaker); the body
        // then gets the same time again at most.
        using var bodyTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            using var content = new StringContent(Json.Serialize(request), Encoding.UTF8, "application/json");
            using var response = await _client.PostAsync(_url, content, cancellationToken).ConfigureAwait(false);
            bodyTimeout.CancelAfter(_timeout);
            var body = await ReadBoundedAsync(response.Content, bodyTimeout.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                return Fail(request, string.Create(CultureInfo.InvariantCulture, $"validation URL answered HTTP {(int)response.StatusCode}"));
            }

            if (body is null)
            {
                return Fail(request, $"validation URL answered more than {MaxResponseBytes} bytes");
            }

            return VerdictParser.TryParse(body, out var verdict, out var error)
                ? Log(request, verdict!)
                : Fail(request, "validation URL answer is not a verdict: " + error);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return Fail(request, string.Create(CultureInfo.InvariantCulture, $"validation URL timed out after {(long)_timeout.TotalMilliseconds} ms"));
        }
        catch (TimeoutException e)
        {
            return Fail(request, "validation URL timed out: " + e.Message);
        }
        catch (CircuitOpenException e)
        {
            return Fail(request, "validation URL not called: " + e.Message);
        }
        catch (HttpRequestException e)
        {
            return Fail(request, "validation URL unreachable: " + e.Message);
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _client.Dispose();

    private static async Task<string?> ReadBoundedAsync(HttpContent content, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength is > MaxResponseBytes)
        {
            return null;
        }

        using var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        using var kept = new MemoryStream();
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (kept.Length + read > MaxResponseBytes)
            {
                return null;
            }

            kept.Write(buffer, 0, read);
        }

        return Encoding.UTF8.GetString(kept.GetBuffer(), 0, (int)kept.Length);
    }

    private ValidationVerdict Fail(ValidationRequest request, string reason) => Log(request, ValidationVerdict.Fail(reason));

    private ValidationVerdict Log(ValidationRequest request, ValidationVerdict verdict)
    {
        _logger.LogInformation("Validation URL answered workId={WorkId} verdict={Verdict} reason={Reason}",
            request.WorkId, verdict.Wire, verdict.Reason ?? "");
        return verdict;
    }
}
