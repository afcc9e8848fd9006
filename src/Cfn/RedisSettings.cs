using System.Collections;
using System.Globalization;
using StackExchange.Redis;

namespace Cfn;

/// <summary>
/// Where Redis is (SPEC §3.6): <c>REDIS_URL</c> (a StackExchange.Redis configuration string, or <c>redis://[:password@]host:port[/db]</c>),
/// otherwise <c>REDIS_HOST</c> (127.0.0.1), <c>REDIS_PORT</c> (6379), <c>REDIS_PASSWORD</c>, <c>REDIS_DB</c> (0).
/// </summary>
internal sealed record RedisSettings(string Host, int Port, string? Password, int Database)
{
    public static RedisSettings FromEnvironment(IDictionary? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables();
        string? Get(string name) => environment[name] as string is { Length: > 0 } v ? v.Trim() : null;
        if (Get("REDIS_URL") is { } url)
        {
            return FromUrl(url);
        }

        return new RedisSettings(
            Get("REDIS_HOST") ?? "127.0.0.1",
            Number(Get("REDIS_PORT"), "REDIS_PORT", 6379, 1, 65535),
            Get("REDIS_PASSWORD"),
            Number(Get("REDIS_DB"), "REDIS_DB", 0, 0, 255));
    }

    /// <summary>
    /// Parses <c>redis://[:password@]host[:port][/db]</c>, <c>host:port</c>, or a StackExchange.Redis configuration
    /// string (<c>host:6379,password=…,defaultDatabase=2</c>).
    /// </summary>
    public static RedisSettings FromUrl(string url)
    {
        if (url.Contains(',', StringComparison.Ordinal) || url.Contains('=', StringComparison.Ordinal))
        {
            var options = ConfigurationOptions.Parse(url);
            var (host, port) = options.EndPoints.FirstOrDefault() switch
            {
                System.Net.DnsEndPoint dns => (dns.Host, dns.Port),
                System.Net.IPEndPoint ip => (ip.Address.ToString(), ip.Port),
                _ => throw new ArgumentException("REDIS_URL names no endpoint (expected host:port,option=value,…)"),
            };
            var db = options.DefaultDatabase ?? 0;
            return new RedisSettings(host, port > 0 ? port : 6379, options.Password, db is >= 0 and <= 255
                ? db : throw new ArgumentException($"REDIS_URL defaultDatabase must be an integer from 0 to 255 (got {db})"));
        }

        if (url.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) && Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            var password = uri.UserInfo.Length > 0 ? Uri.UnescapeDataString(uri.UserInfo.Split(':', 2)[^1]) : null;
            var db = uri.AbsolutePath.Trim('/') is { Length: > 0 } path ? Number(path, "REDIS_URL database", 0, 0, 255) : 0;
            return new RedisSettings(uri.Host, uri.Port > 0 ? uri.Port : 6379, password, db);
        }

        var colon = url.LastIndexOf(':');
        return colon > 0
            ? new RedisSettings(url[..colon], Number(url[(colon + 1)..], "REDIS_URL port", 6379, 1, 65535), null, 0)
            : new RedisSettings(url, 6379, null, 0);
    }

    /// <summary>The StackExchange.Redis configuration: no abort on connect, so an unreachable Redis is reported, not thrown.</summary>
    public string ToConfiguration()
    {
        var options = new ConfigurationOptions
        {
            AbortOnConnectFail = false,
            ConnectTimeout = 2000,
            DefaultDatabase = Database,
            Password = Password,
        };
        options.EndPoints.Add(Host, Port);
        return options.ToString(includePassword: true);
    }

    private static int Number(string? text, string name, int fallback, int min, int max)
    {
        if (text is null)
        {
            return fallback;
        }

        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : throw new ArgumentException($"{name} must be an integer from {min} to {max} (got \"{text}\")");
    }
}
