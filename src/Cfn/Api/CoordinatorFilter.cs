using Cfn.Coordination;
using Cfn.Coordination.Identity;

namespace Cfn.Api;

/// <summary>
/// Finds the coordinator an endpoint acts for. A process may host one coordinator or many (<c>cfn up</c>): every
/// coordinator endpoint takes an optional query parameter <c>coordinatorId</c> (400 <c>INVALID_ID</c> when it breaks the
/// ID rule, 404 <c>COORDINATOR_NOT_FOUND</c> when this process does not host it) and otherwise uses the process's primary
/// coordinator. The handler reads the result with <see cref="CoordinatorFilterExtensions.Coordinator"/>.
/// </summary>
/// <param name="resolve">Finds a hosted coordinator by ID; null asks for the primary one. Returns null when unknown.</param>
internal sealed class CoordinatorFilter(Func<string?, Coordinator?> resolve) : IEndpointFilter
{
    /// <summary>The query parameter naming the coordinator.</summary>
    public const string QueryParameter = "coordinatorId";

    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var http = context.HttpContext;
        var id = http.Request.Query[QueryParameter].ToString();
        if (id.Length > 0 && !Ids.IsValidName(id))
        {
            return ValueTask.FromResult<object?>(ApiErrors.InvalidId(QueryParameter, Ids.NameRule));
        }

        if (resolve(id.Length > 0 ? id : null) is not { } coordinator)
        {
            return ValueTask.FromResult<object?>(ApiErrors.NotFound(
                id.Length > 0 ? $"Coordinator {id} is not hosted by this process" : "This process hosts no coordinator", "COORDINATOR_NOT_FOUND"));
        }

        http.Items[typeof(CoordinatorFilter)] = coordinator;
        return next(context);
    }
}

/// <summary>Reads what <see cref="CoordinatorFilter"/> found.</summary>
internal static class CoordinatorFilterExtensions
{
    /// <summary>The coordinator of this request; only on endpoints behind <see cref="CoordinatorFilter"/>.</summary>
    public static Coordinator Coordinator(this HttpContext http) =>
        http.Items[typeof(CoordinatorFilter)] as Coordinator
        ?? throw new InvalidOperationException("this endpoint is not behind a CoordinatorFilter");
}
