using System.Text.Json;
using Cfn.Coordination.Validation;

namespace Cfn.Api;

/// <summary>Validator statistics (SPEC §3.1 #4, runbook #17).</summary>
internal static class ValidatorEndpoints
{
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    /// <summary>Maps <c>GET /api/validators/performance</c> (open).</summary>
    public static void MapValidatorApi(this IEndpointRouteBuilder app, ValidatorPerformance performance)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(performance);
        app.MapApiGroup("/api/validators").MapGet("/performance", async () =>
            Results.Json(await performance.ReadAsync().ConfigureAwait(false), Web));
    }
}
