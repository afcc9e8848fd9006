using System.Text.Json.Nodes;

namespace Cfn.Bench;

/// <summary>One line of the Markdown table.</summary>
internal sealed record TableLine(string Row, string Measure, string Setup, string Result, string FloorMultiple, string Original, string Target, bool? Met);

/// <summary>What a row returns: its JSON object and its table lines.</summary>
internal sealed record RowResult(JsonObject Json, IReadOnlyList<TableLine> Lines);

/// <summary>One row of the issue 6 table.</summary>
internal interface IRow
{
    /// <summary>The JSON key (a, a2, b, …).</summary>
    string Key { get; }

    Task<RowResult> RunAsync(BenchContext ctx);
}
