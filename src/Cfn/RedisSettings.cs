using System.Collections;
using System.Globalization;
using System.Text;
using StackExchange.Redis;

namespace Cfn;

/// <summary>
/// Where Redis is and how to reach it (SPEC §3.6, D19), kept intact: every endpoint, Sentinel's <c>serviceName</c>, TLS,
/// the ACL user and password, the database and any other StackExchange.Redis option the user gave. It comes from
/// <c>REDIS_URL</c> — <c>redis://</c> or <c>rediss://</c> (TLS) <c>[user[:password]@]host[:port][,host[:port]…][/db][?option=value&amp;…]</c>,
/// a StackExchange.Redis configuration string (<c>host:6379,serviceName=mymaster,ssl=true,user=…,password=…</c>), or
/// <c>host[:port]</c> — otherwise from <c>REDIS_HOST</c> (127.0.0.1), <c>REDIS_PORT</c> (6379), <c>REDIS_USERNAME</c>,
/// <c>REDIS_PASSWORD</c>, <c>REDIS_DB</c> (0). TLS trust and client certificates come from <c>REDIS_TLS_CA_FILE</c>,
/// <c>REDIS_TLS_CERT_FILE</c> and <c>REDIS_TLS_KEY_FILE</c>. <see cref="Display"/> is the only form ever printed: no password.
/// </summary>
internal sealed class RedisSettings
{
    private readonly ConfigurationOptions _options;

    private RedisSettings(ConfigurationOptions options, string display, TlsFiles tls)
    {
        _options = options;
        Display = display;
        Tls = tls;
        if (options.EndPoints.Count == 0)
        {
            throw new ArgumentException("REDIS_URL names no endpoint (expected host:port, a redis:// URL or host:port,option=value,…)");
        }

        if (options.DefaultDatabase is < 0 or > 255)
        {
            throw new ArgumentException($"REDIS_URL database must be an integer from 0 to 255 (got {options.DefaultDatabase})");
        }
    }

    /// <summary>One server, as <c>cfn up</c>'s private redis-server or the REDIS_HOST variables give it.</summary>
    public RedisSettings(string host, int port, string? password, int database, string? user = null)
        : this(Single(host, port, password, database, user), $"{host}:{port}/{database}", TlsFiles.None)
    {
    }

    /// <summary>The first endpoint's host (a Sentinel's, with <see cref="ServiceName"/>).</summary>
    public string Host => Endpoint.Host;

    /// <summary>The first endpoint's port.</summary>
    public int Port => Endpoint.Port;

    /// <summary>The database all keys live in.</summary>
    public int Database => _options.DefaultDatabase ?? 0;

    /// <summary>True when a password is set (it is never shown).</summary>
    public bool HasPassword => !string.IsNullOrEmpty(_options.Password);

    /// <summary>Sentinel's name of the primary, when the endpoints are sentinels.</summary>
    public string? ServiceName => _options.ServiceName;

    /// <summary>Where Redis is, for logs, errors, status and the dump: endpoints, database, user, TLS; never the password.</summary>
    public string Display { get; }

    private TlsFiles Tls { get; }

    private (string Host, int Port) Endpoint => _options.EndPoints[0] switch
    {
        System.Net.DnsEndPoint dns => (dns.Host, dns.Port > 0 ? dns.Port : DefaultPort(_options)),
        System.Net.IPEndPoint ip => (ip.Address.ToString(), ip.Port > 0 ? ip.Port : DefaultPort(_options)),
        var other => (other.ToString() ?? "", DefaultPort(_options)),
    };

    public static RedisSettings FromEnvironment(IDictionary? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables();
        string? Get(string name) => environment[name] as string is { Length: > 0 } v ? v.Trim() : null;
        var settings = Get("REDIS_URL") is { } url
            ? FromUrl(url)
            : new RedisSettings(
                Get("REDIS_HOST") ?? "127.0.0.1",
                Number(Get("REDIS_PORT"), "REDIS_PORT", 6379, 1, 65535),
                Get("REDIS_PASSWORD"),
                Number(Get("REDIS_DB"), "REDIS_DB", 0, 0, 255),
                Get("REDIS_USERNAME"));
        return settings.WithTlsFiles(environment);
    }

    /// <summary>
    /// These settings with the TLS files of <paramref name="environment"/> (the process's when null):
    /// <c>REDIS_TLS_CA_FILE</c>, <c>REDIS_TLS_CERT_FILE</c> and <c>REDIS_TLS_KEY_FILE</c>, which apply to any form of address.
    /// </summary>
    public RedisSettings WithTlsFiles(IDictionary? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables();
        string? Get(string name) => environment[name] as string is { Length: > 0 } v ? v.Trim() : null;
        var tls = new TlsFiles(Get("REDIS_TLS_CA_FILE"), Get("REDIS_TLS_CERT_FILE"), Get("REDIS_TLS_KEY_FILE"));
        if ((tls.Certificate is null) != (tls.Key is null))
        {
            throw new ArgumentException("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together: set both or neither");
        }

        return tls == TlsFiles.None ? this : new RedisSettings(_options, Display, tls);
    }

    /// <summary>Parses a <c>redis://</c> or <c>rediss://</c> URL, a configuration string, or <c>host[:port]</c>; see the class.</summary>
    public static RedisSettings FromUrl(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (url.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase))
        {
            return FromRedisUrl(url);
        }

        if (url.Contains("://", StringComparison.Ordinal))
        {
            throw new ArgumentException($"REDIS_URL scheme must be redis:// or rediss:// (got {url[..url.IndexOf("://", StringComparison.Ordinal)]}://)");
        }

        var options = ApplyDefaults(Parse(url, "REDIS_URL is not a valid StackExchange.Redis configuration"), url);
        return new RedisSettings(options, options.ToString(includePassword: false), TlsFiles.None);
    }

    /// <summary>The client options: the user's, with cfn's defaults where the user set nothing (see <see cref="ApplyDefaults"/>).</summary>
    public ConfigurationOptions ToOptions()
    {
        var options = _options.Clone();
        if (Tls.CertificateAuthority is { } ca)
        {
            options.Ssl = true;
            options.TrustIssuer(ca);
        }

        if (Tls.Certificate is { } certificate)
        {
            options.Ssl = true;
            options.SetUserPemCertificate(certificate, Tls.Key);
        }

        return options;
    }

    /// <summary>The redacted form.</summary>
    public override string ToString() => Display;

    private static ConfigurationOptions Single(string host, int port, string? password, int database, string? user)
    {
        var options = ApplyDefaults(new ConfigurationOptions { DefaultDatabase = database, Password = password, User = user }, "");
        options.EndPoints.Add(host, port);
        return options;
    }

    /// <summary>
    /// cfn's defaults where <paramref name="given"/> (what the user wrote) is silent: no abort on a failed first connect
    /// (an unreachable Redis is reported and retried, not thrown) and a 2 s connect timeout.
    /// </summary>
    private static ConfigurationOptions ApplyDefaults(ConfigurationOptions options, string given)
    {
        if (!given.Contains("abortConnect=", StringComparison.OrdinalIgnoreCase))
        {
            options.AbortOnConnectFail = false;
        }

        if (!given.Contains("connectTimeout=", StringComparison.OrdinalIgnoreCase))
        {
            options.ConnectTimeout = 2000;
        }

        return options;
    }

    private static RedisSettings FromRedisUrl(string url)
    {
        var tls = url.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase);
        var rest = url[(tls ? "rediss://" : "redis://").Length..];
        string? query = null;
        if (rest.IndexOf('?', StringComparison.Ordinal) is var q and >= 0)
        {
            (rest, query) = (rest[..q], rest[(q + 1)..]);
        }

        string? path = null;
        if (rest.IndexOf('/', StringComparison.Ordinal) is var slash and >= 0)
        {
            (rest, path) = (rest[..slash], rest[(slash + 1)..]);
        }

        string? user = null, password = null;
        if (rest.LastIndexOf('@') is var at and >= 0)
        {
            var info = rest[..at];
            rest = rest[(at + 1)..];
            var colon = info.IndexOf(':', StringComparison.Ordinal);
            user = colon < 0 ? Unescape(info) : Unescape(info[..colon]);
            password = colon < 0 ? null : Unescape(info[(colon + 1)..]);
            user = string.IsNullOrEmpty(user) ? null : user;
        }

        if (rest.Length == 0)
        {
            throw new ArgumentException("REDIS_URL names no host (expected redis://[user[:password]@]host[:port][/db])");
        }

        // The endpoints and the query's options are StackExchange.Redis's own syntax; the credentials are set apart, so
        // that a password may hold any character (a configuration string cannot carry a comma in one).
        var pairs = (query ?? "").Split('&', StringSplitOptions.RemoveEmptyEntries)
            .Select(pair => pair.IndexOf('=', StringComparison.Ordinal) is var eq and >= 0 ? $"{Unescape(pair[..eq])}={Unescape(pair[(eq + 1)..])}" : pair + "=true");
        var optionText = string.Join(',', pairs);
        var options = ApplyDefaults(optionText.Length == 0 ? new ConfigurationOptions() : Parse(optionText, "REDIS_URL has an invalid option"), optionText);
        options.Ssl = tls || options.Ssl;
        foreach (var endpoint in rest.Split(','))
        {
            var (host, port) = HostAndPort(endpoint, DefaultPort(options));
            options.EndPoints.Add(host, port);
        }

        options.User = user;
        options.Password = password;
        if (path is { Length: > 0 })
        {
            options.DefaultDatabase = Number(path, "REDIS_URL database", 0, 0, 255);
        }

        var display = new StringBuilder(tls ? "rediss://" : "redis://");
        if (user is not null)
        {
            display.Append(user).Append('@');
        }

        display.Append(string.Join(',', options.EndPoints.Select(EndPointCollection.ToString)))
            .Append(CultureInfo.InvariantCulture, $"/{options.DefaultDatabase ?? 0}");
        if (options.ServiceName is { } service)
        {
            display.Append(CultureInfo.InvariantCulture, $"?serviceName={service}");
        }

        return new RedisSettings(options, display.ToString(), TlsFiles.None);
    }

    private static ConfigurationOptions Parse(string configuration, string what)
    {
        try
        {
            return ConfigurationOptions.Parse(configuration);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{what}: {e.Message}", e);
        }
    }

    private static (string Host, int Port) HostAndPort(string endpoint, int defaultPort)
    {
        if (endpoint.StartsWith('['))
        {
            var close = endpoint.IndexOf(']', StringComparison.Ordinal);
            var host = endpoint[1..close];
            return endpoint.Length > close + 2 && endpoint[close + 1] == ':'
                ? (host, Number(endpoint[(close + 2)..], "REDIS_URL port", defaultPort, 1, 65535))
                : (host, defaultPort);
        }

        var colon = endpoint.LastIndexOf(':');
        return colon > 0 ? (endpoint[..colon], Number(endpoint[(colon + 1)..], "REDIS_URL port", defaultPort, 1, 65535)) : (endpoint, defaultPort);
    }

    private static int DefaultPort(ConfigurationOptions options) => options.ServiceName is not null ? 26379 : options.Ssl ? 6380 : 6379;

    private static string Unescape(string text) => Uri.UnescapeDataString(text);

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

    /// <summary>TLS files from the environment: the CA to trust, and the client certificate with its key.</summary>
    private sealed record TlsFiles(string? CertificateAuthority, string? Certificate, string? Key)
    {
        public static readonly TlsFiles None = new(null, null, null);
    }
}
