using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace Cfn.Api;

/// <summary>
/// D12: mutating endpoints answer requests from loopback (so the runbook's <c>kubectl exec … curl localhost:8080</c>
/// works) or carrying <c>Authorization: Bearer $CFN_ADMIN_TOKEN</c>; anything else gets 401.
/// </summary>
internal sealed class AdminAccess(string? token) : IEndpointFilter
{
    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var http = context.HttpContext;
        if (http.Connection.RemoteIpAddress is { } remote && IPAddress.IsLoopback(remote))
        {
            return next(context);
        }

        var header = http.Request.Headers.Authorization.ToString();
        if (token is { Length: > 0 } && header.StartsWith("Bearer ", StringComparison.Ordinal) &&
            CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header["Bearer ".Length..]), Encoding.UTF8.GetBytes(token)))
        {
            return next(context);
        }

        return ValueTask.FromResult<object?>(ApiErrors.Unauthorized());
    }
}
