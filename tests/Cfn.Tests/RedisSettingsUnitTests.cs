using System.Collections;
using System.Net;

namespace Cfn.Tests;

/// <summary>
/// <see cref="RedisSettings"/> (SPEC D19): every form of <c>REDIS_URL</c> keeps what the user gave (endpoints, Sentinel,
/// TLS, the ACL user, the password, the database and other options), and nothing but <see cref="RedisSettings.ToOptions"/>
/// carries the password.
/// </summary>
public sealed class RedisSettingsUnitTests
{
    [Fact]
    public void RedissUrl_UserPasswordDatabase_TlsOnAndPasswordOnlyInTheOptions()
    {
        var settings = RedisSettings.FromUrl("rediss://cfn-app:p%40ss%2Cword@redis.example.com:6390/4");

        var options = settings.ToOptions();
        Assert.True(options.Ssl);
        Assert.Equal("cfn-app", options.User);
        Assert.Equal("p@ss,word", options.Password);
        Assert.Equal(4, options.DefaultDatabase);
        Assert.Equal(("redis.example.com", 6390), (settings.Host, settings.Port));
        Assert.Equal("rediss://cfn-app@redis.example.com:6390/4", settings.Display);
        Assert.DoesNotContain("p@ss", settings.Display, StringComparison.Ordinal);
        Assert.False(options.AbortOnConnectFail);
    }

    [Fact]
    public void RedisUrl_SeveralSentinelsWithServiceName_EveryEndpointKept()
    {
        var settings = RedisSettings.FromUrl("redis://:pw@s1:26379,s2:26379,s3/2?serviceName=mymaster&connectTimeout=5000");

        var options = settings.ToOptions();
        Assert.Equal("mymaster", options.ServiceName);
        Assert.Equal(["s1:26379", "s2:26379", "s3:26379"], options.EndPoints.Select(e => ((DnsEndPoint)e).Host + ":" + ((DnsEndPoint)e).Port));
        Assert.Equal(5000, options.ConnectTimeout);
        Assert.Equal(2, settings.Database);
        Assert.Equal("mymaster", settings.ServiceName);
        Assert.Equal("redis://s1:26379,s2:26379,s3:26379/2?serviceName=mymaster", settings.Display);
    }

    [Fact]
    public void ConfigurationString_PassedThroughIntact_DisplayWithoutPassword()
    {
        var settings = RedisSettings.FromUrl("s1:26379,s2:26379,serviceName=mymaster,user=cfn,password=secret-pw,ssl=true,sslHost=redis.internal,defaultDatabase=3,protocol=resp2");

        var options = settings.ToOptions();
        Assert.Equal(2, options.EndPoints.Count);
        Assert.Equal(("mymaster", "cfn", "secret-pw", true, "redis.internal", 3), (options.ServiceName, options.User, options.Password, options.Ssl, options.SslHost, options.DefaultDatabase));
        Assert.Equal(StackExchange.Redis.RedisProtocol.Resp2, options.Protocol);
        Assert.DoesNotContain("secret-pw", settings.Display, StringComparison.Ordinal);
        Assert.Contains("serviceName=mymaster", settings.Display, StringComparison.Ordinal);
        Assert.False(options.AbortOnConnectFail); // cfn's default where the string is silent
    }

    [Fact]
    public void ConfigurationString_AbortConnectGiven_TheUsersValueKept()
    {
        Assert.True(RedisSettings.FromUrl("10.0.0.7:6379,abortConnect=true").ToOptions().AbortOnConnectFail);
    }

    [Theory]
    [InlineData("http://redis:6379", "scheme must be redis:// or rediss://")]
    [InlineData("redis://", "names no host")]
    [InlineData("redis://host:99999", "port must be an integer from 1 to 65535")]
    [InlineData("redis://host/300", "database must be an integer from 0 to 255")]
    [InlineData("redis://host?noSuchOption=1", "invalid option")]
    public void BadUrl_ClearErrorNamingTheRule(string url, string rule)
    {
        var e = Assert.Throws<ArgumentException>(() => RedisSettings.FromUrl(url));

        Assert.Contains(rule, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Environment_HostVariablesWithUserAndTlsFiles()
    {
        var settings = RedisSettings.FromEnvironment(new Hashtable
        {
            ["REDIS_HOST"] = "10.1.2.3", ["REDIS_PORT"] = "6380", ["REDIS_USERNAME"] = "cfn", ["REDIS_PASSWORD"] = "pw", ["REDIS_DB"] = "5",
        });

        Assert.Equal(("10.1.2.3", 6380, 5, "cfn", "pw"), (settings.Host, settings.Port, settings.Database, settings.ToOptions().User, settings.ToOptions().Password));
        Assert.Equal("10.1.2.3:6380/5", settings.Display);
        var e = Assert.Throws<ArgumentException>(() => RedisSettings.FromEnvironment(new Hashtable { ["REDIS_TLS_CERT_FILE"] = "/x.crt" }));
        Assert.Contains("REDIS_TLS_KEY_FILE", e.Message, StringComparison.Ordinal);
    }
}
