using System.Text.RegularExpressions;

namespace Cfn.Tests.Infrastructure;

/// <summary>
/// The private redis-server of a running <c>cfn up</c>, as its <c>redis:</c> line tells the operator:
/// <c>redis: 127.0.0.1:PORT (private redis-server, stopped on exit; password …; pid …)</c>.
/// </summary>
internal sealed partial record UpRedis(string Endpoint, string Password, int Pid)
{
    public string Host => Endpoint[..Endpoint.LastIndexOf(':')];

    public string Port => Endpoint[(Endpoint.LastIndexOf(':') + 1)..];

    /// <summary>The runbook's <c>redis-cli -h redis.prod.example.com</c> with this run's host, port and password.</summary>
    public string Cli => $"redis-cli -h {Host} -p {Port} --no-auth-warning -a {Password}";

    /// <summary>A StackExchange.Redis configuration string for it.</summary>
    public string Configuration => $"{Endpoint},password={Password}";

    /// <summary>A <c>redis://</c> URL for it (<c>REDIS_URL</c> of another cfn process).</summary>
    public string Url => $"redis://:{Password}@{Endpoint}";

    /// <summary>Reads the <c>redis:</c> line of <paramref name="up"/> (after <c>ready</c>).</summary>
    public static UpRedis Of(CfnRun up)
    {
        ArgumentNullException.ThrowIfNull(up);
        var line = up.Lines.First(l => l.StartsWith("redis: ", StringComparison.Ordinal));
        var match = PrivateLine().Match(line);
        Assert.True(match.Success, $"not the redis: line of a private redis-server: {line}");
        return new UpRedis(match.Groups["endpoint"].Value, match.Groups["password"].Value,
            int.Parse(match.Groups["pid"].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    [GeneratedRegex(@"^redis: (?<endpoint>\S+) \(private redis-server, stopped on exit; password (?<password>[0-9a-f]{32}); pid (?<pid>\d+)\)$")]
    private static partial Regex PrivateLine();
}
