namespace Cfn.Api;

/// <summary>Route groups of the API: one per path prefix, each answering the library's refusals the same way.</summary>
internal static class ApiGroups
{
    /// <summary>A group for <paramref name="prefix"/> behind the shared <see cref="ApiExceptionFilter"/>.</summary>
    public static RouteGroupBuilder MapApiGroup(this IEndpointRouteBuilder endpoints, string prefix)
    {
        var group = endpoints.MapGroup(prefix);
        group.AddEndpointFilter(ApiExceptionFilter.Instance);
        return group;
    }
}
