using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Net.Http.Headers;

namespace Cfn.Api;

/// <summary>
/// The filter of every mutating endpoint (SPEC D12, D20). A request is trusted when its connection arrived on a loopback
/// <em>local</em> address (what the runbook's <c>kubectl exec … curl localhost:8080</c> produces) or when it carries
/// <c>Authorization: Bearer $CFN_ADMIN_TOKEN</c>; anything else gets 401. Loopback trust also needs a loopback name in
/// <c>Host</c> (<c>localhost:8080</c>), which a DNS-rebinding page cannot send. The peer's address is not looked at: a sidecar
/// proxy (Istio/Envoy forwards outside traffic from 127.0.0.6 to the pod IP) or any same-pod proxy would make every
/// outside caller look like loopback. <paramref name="loopbackTrusted"/> false (<c>CFN_ADMIN_LOOPBACK=false</c>) leaves
/// only the token. A trusted request is still refused when a browser sent it from another site (403) or when its body
/// is not JSON (415): a page open in a browser on the same machine can reach loopback, but it cannot send a JSON body
/// or hide where it came from without a CORS preflight, which these endpoints never grant.
/// </summary>
internal sealed class AdminAccess(string? token, bool loopbackTrusted = true) : IEndpointFilter
{
    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var http = context.HttpContext;
        if (!IsTrusted(http))
        {
            return ValueTask.FromResult<object?>(loopbackTrusted
                ? ApiErrors.Unauthorized()
                : ApiErrors.Error(StatusCodes.Status401Unauthorized,
                    "Admin endpoint: send Authorization: Bearer $CFN_ADMIN_TOKEN (loopback is not trusted: CFN_ADMIN_LOOPBACK=false)", "UNAUTHORIZED"));
        }

        return Refusal(http) is { } refused ? ValueTask.FromResult<object?>(refused) : next(context);
    }

    /// <summary>The connection arrived on a loopback local address (when that is trusted), or the request carries the admin token.</summary>
    private bool IsTrusted(HttpContext http)
    {
        if (loopbackTrusted && http.Connection.LocalIpAddress is { } local &&
            IPAddress.IsLoopback(local.IsIPv4MappedToIPv6 ? local.MapToIPv4() : local) && NamesLoopback(http.Request.Host))
        {
            return true;
        }

        var header = http.Request.Headers.Authorization.ToString();
        return token is { Length: > 0 } && header.StartsWith("Bearer ", StringComparison.Ordinal) &&
               CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header["Bearer ".Length..]), Encoding.UTF8.GetBytes(token));
    }

    /// <summary>
    /// The request's <c>Host</c> is a loopback name or address (<c>localhost</c>, <c>127.0.0.1</c>, <c>[::1]</c>), or absent
    /// (HTTP/1.0). A page whose own name was re-pointed at 127.0.0.1 (DNS rebinding) reaches the loopback socket with its
    /// own name in <c>Host</c>, and its requests are same-origin to the browser, so only this tells it from an operator.
    /// </summary>
    private static bool NamesLoopback(HostString host)
    {
        if (!host.HasValue)
        {
            return true;
        }

        var name = host.Host.Trim('[', ']');
        return name.Equals("localhost", StringComparison.OrdinalIgnoreCase) ||
               (IPAddress.TryParse(name, out var address) && IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address));
    }

    /// <summary>
    /// 403 for a request a browser sent from another site (<c>Sec-Fetch-Site: cross-site</c>, or an <c>Origin</c> that is
    /// not the request's own host), 415 for a body that is not declared <c>application/json</c>; null when neither. An
    /// empty body is fine, so the runbook's bare <c>curl -X POST</c> keeps working.
    /// </summary>
    public static IResult? Refusal(HttpContext http)
    {
        ArgumentNullException.ThrowIfNull(http);
        var request = http.Request;
        if (string.Equals(request.Headers["Sec-Fetch-Site"].ToString(), "cross-site", StringComparison.OrdinalIgnoreCase))
        {
            return ApiErrors.Error(StatusCodes.Status403Forbidden,
                "Sec-Fetch-Site is cross-site: a mutating endpoint does not answer a page of another site", "CROSS_SITE", "Sec-Fetch-Site");
        }

        if (request.Headers.Origin.ToString() is { Length: > 0 } origin && !SameHost(origin, request.Host))
        {
            return ApiErrors.Error(StatusCodes.Status403Forbidden,
                $"Origin {origin} is not this host ({request.Host}): a mutating endpoint does not answer a page of another site", "CROSS_SITE", "Origin");
        }

        var hasBody = http.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? request.ContentLength is > 0;
        if (hasBody && !(MediaTypeHeaderValue.TryParse(request.ContentType, out var type) &&
                         type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)))
        {
            return ApiErrors.Error(StatusCodes.Status415UnsupportedMediaType,
                "Content-Type must be application/json", "UNSUPPORTED_MEDIA_TYPE", "Content-Type");
        }

        return null;
    }

    /// <summary>
    /// An <c>Origin</c> names this host when its host and port are the request's <c>Host</c>: what a page served by cfn
    /// itself would send. <c>null</c> (a sandboxed page) and anything unparsable are foreign.
    /// </summary>
    private static bool SameHost(string origin, HostString host) =>
        Uri.TryCreate(origin, UriKind.Absolute, out var uri) && host.HasValue &&
        string.Equals(uri.Host, host.Host, StringComparison.OrdinalIgnoreCase) &&
        uri.Port == (host.Port ?? (uri.Scheme == Uri.UriSchemeHttps ? 443 : 80));
}
